/*! micro-adjust tracker, consent banner part: loaded by tracker.js when a visitor has to choose
 * (or reopens the choices). The policy's own texts, native controls (keyboard-usable), and
 * refusing is as easy as accepting. Put first in the page, so that it comes first in the tab order.
 */
(() => {
  'use strict';
  const D = document;
  window.microadjust?._define?.('banner', core => {
    const { h, on, choose, gpc, GPC, tag, attr } = core;
    return (prev, open) => {
      D.querySelector('.ma-banner')?.remove();
      const policy = core.policy();
      const prefs = h('div', { id: 'ma-prefs', class: 'ma-prefs', hidden: '' });
      for (const { key, title, text } of policy.purposes) {
        const id = 'ma-p-' + key, locked = gpc && GPC.includes(key);
        const box = h('input', { type: 'checkbox', id, 'data-purpose': key, 'aria-describedby': id + '-d' });
        box.checked = !locked && prev?.[key] === true;
        box.disabled = locked;
        prefs.append(h('div', { class: 'ma-purpose' },
          box,
          h('label', { for: id, text: ' ' + (title || key) }),
          h('p', { id: id + '-d', text: text + (locked ? ' Off: your browser sends a Global Privacy Control signal.' : '') })));
      }
      const button = (action, text, extra) => h('button', { type: 'button', 'data-ma': action, text, ...extra });
      const more = button('choose', 'Choose', { 'aria-expanded': 'false', 'aria-controls': 'ma-prefs' });
      const done = button('save', 'Save my choices', { hidden: '' });
      const banner = h('div', { class: 'ma-banner', role: 'dialog', 'aria-labelledby': 'ma-title', 'aria-describedby': 'ma-intro' },
        h('h2', { id: 'ma-title', text: 'Your privacy choices' }),
        h('p', { id: 'ma-intro', text: 'This shop collects nothing and adjusts nothing until you choose. You can change your choice at any time.' }),
        prefs,
        h('div', { class: 'ma-actions' }, button('refuse', 'Refuse all'), button('accept', 'Accept all'), more, done));
      if (attr('banner-style') != 'none' && !D.getElementById('ma-css')) {
        // The default look; data-banner-style="none" leaves the banner's look to the site.
        D.head.append(h('link', { id: 'ma-css', rel: 'stylesheet', href: new URL('tracker.css', tag.src) }));
      }
      const panel = show => {
        prefs.hidden = done.hidden = !show;
        more.setAttribute('aria-expanded', show);
        if (show) (prefs.querySelector('input:enabled') || done).focus();
      };
      on(banner, 'click', e => {
        const action = e.target.closest('[data-ma]')?.dataset.ma, choice = {};
        if (!action) return;
        if (action == 'choose') return panel(prefs.hidden);
        for (const { key } of policy.purposes) choice[key] = action == 'accept';
        if (action == 'save') for (const x of prefs.querySelectorAll('[data-purpose]')) choice[x.dataset.purpose] = x.checked;
        banner.remove();
        choose(choice, true);
      });
      on(banner, 'keydown', e => {
        if (e.key == 'Escape' && !prefs.hidden) {
          panel(false);
          more.focus();
        }
      });
      D.body.prepend(banner);
      if (open) panel(true);
    };
  });
})();
