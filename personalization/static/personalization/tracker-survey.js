/*! micro-adjust tracker, survey part: loaded by tracker.js when a slot's answer is a survey
 * ({"survey": "<key>"}). Fetches GET surveys/<key>, renders its questions into the slot and
 * posts the answers to surveys/<key>/responses with the decision that asked.
 */
(() => {
  'use strict';
  window.microadjust?._define?.('survey', core => {
    const { h, on, warn, cut, obj, send, problem, track } = core;
    return async (slot, key) => {
      const decision = slot.dataset.maDecision, path = 'surveys/' + encodeURIComponent(key);
      const r = await send(path, null, 1);
      if (!r.ok) return problem(r, 'loading survey ' + key);
      const questions = (Array.isArray(r.body.questions) ? r.body.questions : []).filter(q => obj(q) && q.key);
      if (!questions.length) return warn('survey' + key, `survey ${key} has no questions: not shown`);
      const form = h('form', { class: 'ma-survey', 'data-survey': key }, r.body.title && h('h2', { text: r.body.title }));
      // Each question: its choices as radio buttons (checkboxes when its type says "multi"),
      // or a text box when it has none.
      const readers = questions.map((q, i) => {
        const name = `ma-q-${key}-${i}`, multi = /multi/.test(q.type);
        const choices = Array.isArray(q.choices) ? q.choices : [];
        const inputs = choices.map(() => h('input', { type: multi ? 'checkbox' : 'radio', name }));
        const text = choices.length ? null : h('textarea', { name, 'aria-label': q.text || q.key, maxlength: 2000 });
        form.append(h('fieldset', { 'data-question': q.key },
          h('legend', { text: q.text || q.key }),
          text,
          ...choices.map((ch, j) => h('label', {}, inputs[j], ' ' + (obj(ch) ? ch.label || ch.text || ch.key : ch)))));
        return answers => {
          const picked = choices.filter((ch, j) => inputs[j].checked).map(ch => obj(ch) ? ch.key ?? ch.value : ch);
          if (text && text.value.trim()) answers[q.key] = text.value.trim();
          else if (picked.length) answers[q.key] = multi ? picked : picked[0];
        };
      });
      const submit = h('button', { type: 'submit', text: 'Send' });
      form.append(submit);
      on(form, 'submit', ev => {
        ev.preventDefault();
        const answers = {};
        readers.forEach(read => read(answers));
        submit.disabled = true;
        const body = { visitor_id: core.visitor(), session_id: core.session(), answers };
        if (decision) body.decision_id = decision;
        send(path + '/responses', body)
          .then(r2 => r2.ok ? form.replaceWith(h('p', { class: 'ma-survey-done', role: 'status', text: 'Thank you!' })) : problem(r2, 'sending survey answers'))
          .catch(() => {})
          .finally(() => { submit.disabled = false; });
      }, {});
      slot.append(form);
      slot.hidden = false;
      track('survey_shown', { survey_key: cut(key) }, slot);
    };
  });
})();
