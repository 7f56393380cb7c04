/*! micro-adjust tracker, live part: loaded by tracker.js only when a decision carries a plan
 * (`live` entries), so a page without live rules pays nothing. It measures the page signals
 * (the page.* attributes; docs/CONTRACT.md, "Live in-page adjustments", defines each) while
 * `personalization` or `granular_tracking` is granted, keeps them in memory, and evaluates each
 * entry's `when` with its own implementation of the condition language, at most once per
 * animation frame and only after a signal the plan reads has changed. A firing is applied in
 * place and reported to POST /adjustments with the core's transport; a refusal puts the slot back.
 */
(() => {
  'use strict';
  const W = window, D = document, isArr = Array.isArray;

  // ---- the condition language --------------------------------------------------------------------
  // GrowthBook's (packages/sdk-js/src/mongrule.ts) with the server's departures
  // (personalization/conditions.py): malformed logic fails closed, objects compare regardless of
  // key order, a path reaches only own keys and canonical list indexes, every key of a condition
  // object must hold (logic operators included).
  const own = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
  const plain = v => !!v && typeof v == 'object' && !isArr(v);
  const isOps = v => plain(v) && Object.keys(v).length > 0 && Object.keys(v).every(k => k[0] == '$');
  const splits = new Map();
  function path(o, p) {
    if (!splits.has(p)) splits.set(p, p.split('.'));
    for (const k of splits.get(p)) {
      if (plain(o) && own(o, k)) o = o[k];
      else if (isArr(o) && /^(0|[1-9]\d*)$/.test(k) && k < o.length) o = o[k];
      else return null;
    }
    return o === undefined ? null : o;
  }
  function evalCondition(c, attrs, groups) {
    if (!plain(c)) return false;
    groups = plain(groups) ? groups : {};
    for (const k in c) {
      const v = c[k];
      if ((k == '$and' || k == '$or' || k == '$nor') ? !isArr(v) : k == '$not' && !plain(v)) return false;
    }
    for (const k in c) {
      const v = c[k];
      if (k == '$and' ? !v.every(x => evalCondition(x, attrs, groups))
        : k == '$or' ? v.length && !v.some(x => evalCondition(x, attrs, groups))
          : k == '$nor' ? !v.length || v.some(x => evalCondition(x, attrs, groups))
            : k == '$not' ? evalCondition(v, attrs, groups)
              : !evalValue(v, path(attrs, k), groups)) return false;
    }
    return true;
  }
  // Equality of JSON serialisations, keys in any order (NaN and ±Infinity serialise as null).
  function same(a, b) {
    if (typeof a == 'number' && !isFinite(a)) a = null;
    if (typeof b == 'number' && !isFinite(b)) b = null;
    if (isArr(a)) return isArr(b) && a.length == b.length && a.every((x, i) => same(x, b[i]));
    if (plain(a)) {
      const ka = Object.keys(a);
      return plain(b) && ka.length == Object.keys(b).length && ka.every(k => own(b, k) && same(a[k], b[k]));
    }
    return a === b;
  }
  function evalValue(c, v, groups) {
    if (typeof c == 'string') return v + '' === c;
    if (typeof c == 'number') return v * 1 === c;
    if (typeof c == 'boolean') return v !== null && !!v === c;
    if (c === null) return v === null;
    if (!isOps(c)) return same(v, c);
    for (const op in c) if (!evalOp(op, v, c[op], groups)) return false;
    return true;
  }
  const fold = (v, i) => i && typeof v == 'string' ? v.toLowerCase() : v;
  // Array.prototype.includes (SameValueZero), an array attribute matching through any element.
  const isIn = (v, list, i) => isArr(list) && (list = list.map(x => fold(x, i)),
    isArr(v) ? v.some(x => list.includes(fold(x, i))) : list.includes(fold(v, i)));
  function version(v) {
    if (typeof v == 'number') v += '';
    if (!v || typeof v != 'string') v = '0';
    const parts = v.replace(/(^v|\+.*$)/g, '').split(/[-.]/);
    if (parts.length == 3) parts.push('~');
    return parts.map(x => /^[0-9]+$/.test(x) ? x.padStart(5, ' ') : x).join('-');
  }
  const regexes = new Map();
  function matches(v, pattern, flags) {
    if (typeof pattern != 'string') return false;
    const key = flags + pattern;
    if (!regexes.has(key)) {
      try { regexes.set(key, new RegExp(pattern, flags)); } catch { regexes.set(key, null); }
    }
    const re = regexes.get(key);
    return !!re && re.test(v);
  }
  const typeOf = v => v === null ? 'null' : isArr(v) ? 'array' : typeof v;
  const group = (groups, name) => isArr(groups[name]) ? groups[name] : [];
  function evalOp(op, v, e, groups) {
    switch (op) {
      case '$eq': return v === e;
      case '$ne': return v !== e;
      case '$lt': return v < e;
      case '$lte': return v <= e;
      case '$gt': return v > e;
      case '$gte': return v >= e;
      case '$veq': return version(v) === version(e);
      case '$vne': return version(v) !== version(e);
      case '$vlt': return version(v) < version(e);
      case '$vlte': return version(v) <= version(e);
      case '$vgt': return version(v) > version(e);
      case '$vgte': return version(v) >= version(e);
      case '$exists': return e ? v !== null : v === null;
      case '$type': return typeOf(v) === e;
      case '$in': case '$ini': return isIn(v, e, op == '$ini');
      case '$nin': case '$nini': return isArr(e) && !isIn(v, e, op == '$nini');
      case '$inGroup': return isIn(v, group(groups, e));
      case '$notInGroup': return !isIn(v, group(groups, e));
      case '$all': case '$alli':
        // $alli folds case where the wanted value is a string, comparing the element as text.
        return isArr(v) && isArr(e) && e.every(c => v.some(x => op == '$alli' && typeof c == 'string'
          ? (x + '').toLowerCase() === c.toLowerCase() : evalValue(c, x, groups)));
      case '$elemMatch':
        return isArr(v) && plain(e) && v.some(x => x && (isOps(e) ? evalValue(e, x, groups) : evalCondition(e, x, groups)));
      case '$size': return isArr(v) && evalValue(e, v.length, groups);
      case '$regex': return matches(v, e, '');
      case '$regexi': return matches(v, e, 'i');
      case '$not': return !evalValue(e, v, groups);
    }
    return false; // an unknown operator never matches
  }
  // The page.* attributes a condition reads (e.g. page.section_visible_s.hero), at any depth
  // of the logic.
  function reads(c, out = new Set()) {
    if (plain(c)) {
      for (const k in c) {
        if (/^\$(and|or|nor)$/.test(k) && isArr(c[k])) c[k].forEach(x => reads(x, out));
        else if (k == '$not') reads(c[k], out);
        else if (k.startsWith('page.')) out.add(k);
      }
    }
    return out;
  }

  const ma = W.microadjust;
  if (!ma) return;
  ma.evalCondition = (c, attrs, groups) => evalCondition(c, plain(attrs) ? attrs : {}, groups);

  // ---- page signals and the plan ---------------------------------------------------------------------
  ma._define?.('live', core => {
    const { on, warn, applySlot, call, problem, attr } = core;
    const allowed = purpose => ma.consent.get()[purpose] === true;
    const SPEED_MS = 1000, EXIT_UP_PX = 1500, RAGE_N = 3, RAGE_MS = 1000, RAGE_PX = 30, TREND_S = 30;
    const clock = () => performance.now();
    let sig, measuring = false, entries = [], wanted = new Set(), fired = new Set(), frame = 0, ticker = 0;
    let steps, lastY, visibleMs, visibleSince, lastInput, active, burst, sections;
    const coarse = W.matchMedia?.('(pointer: coarse)').matches;

    function reset() {
      sig = { scroll_speed: 0, scroll_depth: 0, dwell_s: 0, idle_s: 0, exit_intent: false, section_visible_s: {}, clicks: 0, rage_clicks: 0, activity_trend: 0 };
      steps = []; lastY = scrollY; burst = null; active = new Set(); sections = new Map();
      visibleMs = 0; visibleSince = D.hidden ? 0 : 0.001; lastInput = 0; // counted from load (the time origin)
    }
    reset();
    // Set one signal; evaluate on the next frame if the plan reads it.
    function set(name, value) {
      if (sig[name] === value) return;
      sig[name] = value;
      if (wanted.has(name) && !frame) frame = requestAnimationFrame(evaluate);
    }
    const sectionMs = s => s.ms + (s.since ? clock() - s.since : 0);
    // Whole visible seconds per section name (elements sharing a name add up); a new object
    // only when a value changed, so an unchanged one schedules nothing.
    function sectionsUpdate() {
      const now = {}, was = sig.section_visible_s;
      for (const [e, s] of sections) now[e.dataset.section] = (now[e.dataset.section] || 0) + sectionMs(s);
      for (const k in now) now[k] = Math.floor(now[k] / 1000);
      if (Object.keys(now).some(k => now[k] !== was[k])) set('section_visible_s', now);
    }
    function input() {
      const t = clock();
      lastInput = t;
      active.add(Math.floor(t / 1000));
    }
    function depth() {
      const pct = Math.min(100, Math.round((scrollY + innerHeight) * 100 / D.documentElement.scrollHeight));
      if (pct > sig.scroll_depth) set('scroll_depth', pct);
    }
    function onScroll() {
      const y = scrollY;
      steps.push([clock(), y - lastY]);
      lastY = y;
      input();
      depth();
      tick();
    }
    // The signals that move with time alone, four times a second (and after each scroll).
    function tick() {
      if (!measuring) return;
      const t = clock();
      while (steps.length && steps[0][0] <= t - SPEED_MS) steps.shift();
      let moved = 0, up = 0;
      for (const [, dy] of steps) { moved += Math.abs(dy); if (dy < 0) up -= dy; }
      set('scroll_speed', Math.round(moved * 1000 / SPEED_MS));
      if (coarse && up >= EXIT_UP_PX) set('exit_intent', true);
      set('dwell_s', Math.floor((visibleMs + (visibleSince && t - visibleSince)) / 1000));
      set('idle_s', Math.floor((t - lastInput) / 1000));
      const n = Math.floor(t / 1000);
      let recent = 0;
      for (let s = n - TREND_S; s < n; s++) recent += active.has(s);
      const a = recent / TREND_S, b = active.size / Math.max(n, 1), top = Math.max(a, b);
      set('activity_trend', n < TREND_S || !top ? 0 : Math.round((a - b) / top * 100) / 100);
      if ([...sections.values()].some(s => s.since)) sectionsUpdate();
    }
    function onClick(ev) {
      input();
      set('clicks', sig.clicks + 1);
      const t = clock(), { clientX: x, clientY: y } = ev;
      if (burst && t - burst.t <= RAGE_MS && Math.hypot(x - burst.x, y - burst.y) <= RAGE_PX) {
        if (++burst.n == RAGE_N) set('rage_clicks', sig.rage_clicks + 1);
      } else {
        burst = { t, x, y, n: 1 };
      }
    }
    function onVisibility() {
      const t = clock();
      if (D.hidden && visibleSince) { visibleMs += t - visibleSince; visibleSince = 0; }
      else if (!D.hidden && !visibleSince) visibleSince = t;
      for (const s of sections.values()) s.since = s.visible && !D.hidden ? s.since || t : (s.ms = sectionMs(s), 0);
      tick();
    }
    const observer = W.IntersectionObserver && new IntersectionObserver(list => {
      if (!measuring) return;
      for (const en of list) {
        const s = sections.get(en.target) || { ms: 0, since: 0 };
        sections.set(en.target, s);
        s.visible = en.isIntersecting && (en.intersectionRatio >= 0.5 || en.intersectionRect.height >= innerHeight / 2);
        s.ms = sectionMs(s);
        s.since = s.visible && !D.hidden ? clock() : 0;
      }
      sectionsUpdate();
    }, { threshold: [0, 0.25, 0.5, 0.75, 1] });
    const when = fn => ev => measuring && fn(ev);
    for (const type of ['pointermove', 'pointerdown', 'keydown', 'wheel', 'touchstart']) on(D, type, when(input));
    on(W, 'scroll', when(onScroll));
    on(D, 'click', when(onClick), true);
    on(D, 'mouseout', when(ev => ev.relatedTarget || ev.clientY > 0 || set('exit_intent', true)));
    on(D, 'visibilitychange', when(onVisibility));
    on(D, 'microadjust:consent', () => consent());
    // Page hide: a report waiting for its retry gets one keepalive try now (as the core does for
    // events: sendBeacon could not carry the key), and is dropped if the page goes.
    on(D, 'visibilitychange', () => D.hidden && waiting.forEach(report));

    // Measuring follows consent: personalization or granular_tracking. A plan needs personalization.
    function consent() {
      const measure = allowed('personalization') || allowed('granular_tracking');
      if (!allowed('personalization')) {
        // Withdrawn: the plan goes, and a firing not yet reported is undone, never sent.
        entries = [];
        waiting.forEach(back);
      }
      if (measure == measuring) return;
      measuring = measure;
      clearInterval(ticker);
      observer?.disconnect();
      reset();
      if (measure) {
        ticker = setInterval(tick, 250);
        for (const e of D.querySelectorAll('[data-section]')) observer?.observe(e);
        depth();
        tick();
      }
    }
    // Evaluate the plan: each entry whose `when` now holds fires, at most once per slot in this
    // page view, highest priority first, never over a slot a higher priority already holds.
    function evaluate() {
      frame = 0;
      if (!measuring || !entries.length) return;
      const attrs = { page: sig }, t = Date.now();
      for (const en of entries) {
        if (fired.has(en.slot) || en.expires < t || !evalCondition(en.when, attrs, {})) continue;
        fired.add(en.slot);
        fire(en);
      }
      entries = entries.filter(en => !fired.has(en.slot));
    }
    let decision = '';
    // Fire: note how the slot's elements are (to put them back), apply the entry, report it.
    function fire(en) {
      const signals = {}, before = [];
      for (const k of en.reads) signals[k] = path({ page: sig }, k);
      for (const e of D.querySelectorAll(`[data-slot="${CSS.escape(en.slot)}"]`)) {
        before.push([e, e.cloneNode(true)]);
        try { applySlot(e, en.slot, en, decision); } catch (err) { warn('live' + en.slot, `slot ${en.slot} left as is: ${err}`); }
      }
      const body = { decision_id: decision, slot: en.slot, variant: en.variant, token: en.token, signals, fired_at: new Date().toISOString() };
      D.dispatchEvent(new CustomEvent('microadjust:adjustment', { detail: body }));
      report({ body, before, tries: 0 });
    }
    // Put a slot back as it was before the firing (the page-load answer's content).
    // Its children are replaced only if the firing changed them.
    function back(r) {
      clearTimeout(r.timer);
      waiting.delete(r);
      for (const [e, was] of r.before) {
        for (const a of [...e.attributes]) e.removeAttribute(a.name);
        for (const a of was.attributes) e.setAttribute(a.name, a.value);
        e.isEqualNode(was) || e.replaceChildren(...was.childNodes);
      }
    }
    // Each firing is reported once answered: retried like events (backoff doubling from
    // data-retry-ms to a minute, Retry-After honoured) and never applied again. Sent with
    // keepalive, so a report under way survives the page's unloading.
    const waiting = new Set(), retryMs = +attr('retry-ms') || 1000;
    function report(r) {
      clearTimeout(r.timer);
      waiting.delete(r);
      const again = after => {
        waiting.add(r);
        r.timer = setTimeout(() => report(r), Math.max(Math.min(retryMs * 2 ** r.tries++, 60000), Math.min(after, 60) * 1000));
      };
      call('adjustments', r.body, { keepalive: true }).then(res => {
        if (res.status == 408 || res.status == 429 || res.status >= 500) return again(res.retryAfter);
        res.ok || problem(res, 'reporting an adjustment');
        res.ok && res.body.applied !== false || back(r);
      }, () => again(0));
    }
    ma.signals = () => ({ page: JSON.parse(JSON.stringify(sig)) });

    // A decision's plan replaces the one before.
    return d => {
      decision = d.decision_id;
      entries = [];
      for (const en of isArr(d.live) ? d.live : []) {
        const bad = !plain(en) || typeof en.slot != 'string' || !plain(en.when) || !plain(en.content);
        if (bad) {
          warn('when' + en?.slot, `live entry for slot ${en?.slot} has no valid slot, when or content: ignored`);
          continue;
        }
        entries.push({ ...en, reads: reads(en.when), expires: Date.parse(en.expires_at) || Infinity, priority: +en.priority || 0 });
      }
      entries.sort((a, b) => b.priority - a.priority);
      wanted = new Set(entries.flatMap(en => [...en.reads].map(k => k.split('.')[1])));
      consent();
      if (measuring && !frame) frame = requestAnimationFrame(evaluate);
    };
  });
})();
