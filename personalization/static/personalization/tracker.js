/*! micro-adjust tracker: consent first, then collection and server-side decisions.
 * Plain JS, no build step, no third-party host. README.md ("The tracker script") documents
 * the attributes, the JavaScript API, the events and the dataLayer mapping.
 * Nothing here may throw into the host page: entry points are guarded, and each problem is
 * reported once with console.warn.
 */
(() => {
  'use strict';
  const W = window, D = document, N = navigator;
  if (W.microadjust?.version) return; // loaded twice: the first copy serves

  const warned = new Set();
  const warn = (code, msg) => {
    if (!warned.has(code)) { warned.add(code); console.warn('[microadjust] ' + msg); }
  };
  const guard = fn => function (...args) {
    try { return fn.apply(this, args); } catch (e) { warn('bug' + e, 'internal error, ignored: ' + e); }
  };
  const on = (target, type, fn, opts = { passive: true }) => target.addEventListener(type, guard(fn), opts);
  const $$ = (selector, root = D) => root.querySelectorAll(selector);
  const now = () => Date.now();
  const cut = (v, n = 256) => String(v ?? '').slice(0, n);
  // A finite number from a number or a numeric string, else NaN (every comparison is false).
  const num = v => (typeof v == 'number' || (typeof v == 'string' && v.trim())) && isFinite(v) ? +v : NaN;
  const obj = v => !!v && typeof v == 'object' && !Array.isArray(v);
  const emit = (name, detail) => D.dispatchEvent(new CustomEvent('microadjust:' + name, { detail }));
  const uuid = () => crypto.randomUUID();
  // Storage may be off (privacy modes, sandboxed frames): every access may fail.
  const load = (store, key) => { try { return JSON.parse(W[store].getItem(key)); } catch { return null; } };
  const save = (store, key, value) => { try { W[store].setItem(key, JSON.stringify(value)); } catch { /* off or full */ } };

  // ---- configuration: the script tag's data- attributes ------------------------------------------
  const tag = D.currentScript || D.querySelector('script[data-key]');
  const attr = (name, dflt) => tag?.getAttribute('data-' + name) || dflt;
  const int = (name, dflt) => { const v = parseInt(attr(name), 10); return v >= 0 ? v : dflt; };
  const cfg = {
    key: attr('key', ''), api: attr('api', ''), banner: attr('banner', 'auto'),
    flushMs: int('flush-ms', 3000), decideMs: int('decide-timeout-ms', 1000), retryMs: int('retry-ms', 1000)
  };
  const SESSION_MS = 30 * 60 * 1000, BATCH = 100, KEEPALIVE_BYTES = 60000, QUEUE_MAX = 1000, HOVER_MS = 600, SECTION_MS = 1000;
  const GPC = ['personalization', 'granular_tracking'];
  const gpc = N.globalPrivacyControl === true;
  const t0 = now();

  let vid, kept = false, policy = null, granted = {}, ready = false, off = false;
  let queue = [], inflight = null, timer = 0, attempt = 0, pv = false, decided = false;
  let pageItem = null, dl = null, dlIndex = 0, dlFirst = true;

  // ---- identity and session ----------------------------------------------------------------------
  // Nothing is written to the device before a choice is recorded: the visitor id lives in memory
  // until then, and is kept afterwards because the consent record refers to it.
  const readVid = () => /(?:^|; )ma_vid=([\w-]{1,64})/.exec(D.cookie)?.[1] || load('localStorage', 'ma_vid');
  function persist() {
    kept = true;
    save('localStorage', 'ma_vid', vid);
    D.cookie = `ma_vid=${vid}; Max-Age=34128000; Path=/; SameSite=Lax${location.protocol == 'https:' ? '; Secure' : ''}`;
    session();
  }
  let sess = null, idle = 0;
  function session(touch) {
    const t = now();
    sess ||= load('sessionStorage', 'ma_sess');
    if (!sess?.id || t - sess.last > SESSION_MS) sess = { id: uuid(), last: t };
    if (touch) {
      sess.last = t;
      clearTimeout(idle);
      idle = setTimeout(guard(endSession), SESSION_MS);
    }
    if (kept) save('sessionStorage', 'ma_sess', sess);
    return sess;
  }
  function endSession() {
    if (sess?.started) {
      sess.last = now(); // the end belongs to this session, however late the timer fired
      if (track('session_end')) flush();
    }
    sess = null;
    try { sessionStorage.removeItem('ma_sess'); } catch { /* off */ }
  }

  // ---- events: batched, retried with backoff, flushed with keepalive when the page is hidden -------
  let ctx = {};
  function context() {
    const url = cut(location.href, 2048);
    if (ctx.url != url) {
      const utm = {};
      new URLSearchParams(location.search).forEach((v, k) => { if (/^utm_(source|medium|campaign|term|content)$/.test(k)) utm[k.slice(4)] = cut(v); });
      ctx = { url, user_agent: cut(N.userAgent, 1024), title: cut(D.title) };
      if (D.referrer) ctx.referrer = cut(D.referrer, 2048);
      if (N.language) ctx.locale = cut(N.language, 35);
      if (Object.keys(utm).length) ctx.utm = utm;
    }
    return ctx;
  }
  const allowed = purpose => granted[purpose] === true;
  const purposeOf = type => type == 'hover' || type == 'scroll' ? 'granular_tracking' : 'analytics';
  // Queue one event if its purpose is granted; says whether it did.
  function track(type, properties = {}, el) {
    if (off || !allowed(purposeOf(type))) return false;
    const s = session(true);
    if (!s.started && !type.startsWith('session_')) {
      s.started = 1;
      session();
      track('session_start');
    }
    const ev = {
      event_id: uuid(), type, visitor_id: vid, session_id: s.id,
      timestamp: new Date().toISOString(), properties, context: context()
    };
    const slot = el?.closest?.('[data-ma-decision]');
    if (slot) ev.decision_id = slot.dataset.maDecision;
    if (queue.push(ev) > QUEUE_MAX) {
      queue.shift();
      warn('queue', `over ${QUEUE_MAX} events waiting: the oldest are dropped`);
    }
    schedule(queue.length >= BATCH ? 0 : cfg.flushMs);
    return true;
  }
  const schedule = delay => { if (!timer && !inflight) timer = setTimeout(guard(flush), delay); };
  const retryable = status => status == 408 || status == 429 || status >= 500;
  function take(limit = Infinity) {
    const batch = [];
    let size = 20;
    while (queue.length && batch.length < BATCH) {
      size += JSON.stringify(queue[0]).length + 1;
      if (size > limit && batch.length) break;
      batch.push(queue.shift());
    }
    return batch;
  }
  // Send the oldest waiting events. When the page is hidden (it may be leaving), send what fits
  // in a keepalive request at once, beside any batch already in flight.
  function flush(hidden) {
    clearTimeout(timer);
    timer = 0;
    if (off || !queue.length || (inflight && !hidden)) return;
    const batch = take(hidden ? KEEPALIVE_BYTES : Infinity);
    if (!hidden) inflight = batch;
    const done = () => { if (!hidden) inflight = null; };
    return call('events', { events: batch }, { keepalive: hidden }).then(r => {
      done();
      if (retryable(r.status)) return retry(batch, r.retryAfter);
      attempt = 0;
      if (!r.ok) problem(r, 'sending events');
      else if (r.body.errors?.length) warn('quarantine', 'events quarantined, e.g. ' + JSON.stringify(r.body.errors[0]));
      if (queue.length) schedule(0);
    }, () => {
      done();
      unreachable();
      retry(batch, 0);
    });
  }
  // The same events (same event_id) go again: the API counts a repeat as a duplicate.
  function retry(batch, retryAfter) {
    queue = batch.concat(queue);
    schedule(Math.max(Math.min(cfg.retryMs * 2 ** attempt++, 60000), Math.min(retryAfter, 60) * 1000));
  }

  // ---- the API ----------------------------------------------------------------------------------------
  // Browsers forbid scripts to set Sec-GPC: a GPC browser sends it itself, and this script relays
  // navigator.globalPrivacyControl through the consent API (method "gpc").
  function call(path, body, { keepalive, signal } = {}) {
    const headers = { Authorization: 'Bearer ' + cfg.key };
    if (body) headers['Content-Type'] = 'application/json';
    return fetch(cfg.api + path, {
      method: body ? 'POST' : 'GET', headers, body: body && JSON.stringify(body),
      keepalive, signal, credentials: 'omit', cache: 'no-store'
    }).then(r => r.json().catch(() => ({})).then(b => ({
      ok: r.ok, status: r.status, body: obj(b) ? b : {}, retryAfter: num(r.headers.get('Retry-After')) || 0
    })));
  }
  // A request other than an event batch: a few retries with backoff, then it gives up with
  // status 0 (unreachable, already reported). It never rejects.
  const send = (path, body, tries = 3) => call(path, body).then(
    r => retryable(r.status) && tries ? later(path, body, tries, r.retryAfter) : r,
    () => tries ? later(path, body, tries, 0) : (unreachable(), { ok: false, status: 0, body: {} }));
  const later = (path, body, tries, retryAfter) => new Promise(ok => setTimeout(ok, Math.max(cfg.retryMs * 2 ** (3 - tries), retryAfter * 1000)))
    .then(() => send(path, body, tries - 1));
  const unreachable = () => warn('network', `API unreachable at ${cfg.api} (offline, or CORS refused); retrying`);
  function problem(r, what) {
    const e = r.body.error || {};
    if (!r.status) return;
    off ||= r.status == 401 || e.code == 'origin_not_allowed'; // a wrong key or origin: stop
    warn(e.code || what, `${what}: HTTP ${r.status} ${e.code || ''} ${e.message || ''}${off ? ' Tracker stopped.' : ''}`);
  }

  // ---- consent ---------------------------------------------------------------------------------------
  async function setUp() {
    const r = await send('consent-policy');
    if (!r.ok) return problem(r, 'reading the consent policy');
    if (!Array.isArray(r.body.purposes) || !r.body.version) return warn('policy', 'consent policy of unexpected shape');
    policy = r.body;
    let c = load('localStorage', 'ma_consent');
    if (c?.vid != vid) c = null;
    let purposes = c?.p || {}, ask = !c?.a;
    if (!ask && c.v != policy.version) {
      // A new policy version: the API knows whether it changes what the visitor allowed.
      const r2 = await send('consent/' + encodeURIComponent(vid));
      if (!r2.ok) return problem(r2, "reading the visitor's consent");
      purposes = r2.body.purposes;
      ask = r2.body.reconsent_required === true;
      remember(purposes, true, c.g);
    }
    if (gpc && c?.g != policy.version) purposes = await choose(purposes, !ask) || purposes;
    granted = obj(purposes) ? purposes : {};
    ready = true;
    drain(); // pushes made before the script ran; a view_item among them names this page's item
    grant(granted);
    if (ask) banner(granted);
    emit('ready', { policy, purposes: granted, ask });
  }
  const early = () => warn('early', 'consent policy not loaded yet: wait for microadjust:ready');
  const remember = (p, answered, g) => save('localStorage', 'ma_consent', { vid, v: policy.version, p, a: answered ? 1 : 0, g });
  // Record a choice with the API: only what the API confirms is in force.
  async function choose(purposes, answered, method = 'banner') {
    if (!policy) return early();
    const asked = {};
    for (const { key } of policy.purposes) asked[key] = purposes[key] === true && !(gpc && GPC.includes(key));
    const r = await send('consent', { visitor_id: vid, policy_version: policy.version, purposes: asked, method: gpc ? 'gpc' : method });
    if (!r.ok) return problem(r, 'recording consent');
    const p = obj(r.body.purposes) ? r.body.purposes : {};
    persist();
    remember(p, answered, gpc ? policy.version : 0);
    if (ready) grant(p);
    emit('consent', { purposes: p });
    return p;
  }
  function grant(p) {
    granted = p;
    queue = queue.filter(ev => allowed(purposeOf(ev.type)));
    if (allowed('analytics')) {
      pv ||= track('page_view', { path: cut(location.pathname, 2048), title: cut(D.title), ...(pageItem && { item_id: pageItem }) });
      observeSections();
    }
    if (!allowed('personalization')) revealAll();
    else if (!decided) decide();
  }

  function h(tag, attrs = {}, ...kids) {
    const e = D.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) if (k == 'text') e.textContent = v; else if (v != null) e.setAttribute(k, v);
    e.append(...kids.filter(Boolean)); // no null, '' or false child shown as text
    return e;
  }
  // Parts few page views need (the banner's UI, recommendation items, surveys) load on demand
  // from the script's own folder, as classic scripts: no CORS needed, the same CSP source.
  const parts = {}, waiting = {};
  const part = name => parts[name] ||= new Promise((ok, fail) => {
    waiting[name] = ok;
    const s = h('script', { src: new URL(`tracker-${name}.js`, tag.src), async: '' });
    s.onerror = fail;
    D.head.append(s);
  }).then(make => make(core), e => warn('part' + name, `tracker-${name}.js did not load (${e.type || e})`));
  const banner = (prev, open) => !policy
    ? early()
    : (cfg.banner != 'none' || open) && part('banner').then(show => show?.(prev, open));
  const closeBanner = () => D.querySelector('.ma-banner')?.remove();

  // ---- decisions -------------------------------------------------------------------------------------
  function decide() {
    const slots = [...new Set([...$$('[data-slot]')].map(e => e.dataset.slot).filter(Boolean))].slice(0, 50);
    if (!slots.length || off) return;
    decided = true;
    const abort = new AbortController(), late = () => abort.signal.aborted;
    const timeout = setTimeout(guard(() => {
      abort.abort();
      warn('slow', `no decision in ${cfg.decideMs} ms: defaults kept`);
    }), cfg.decideMs);
    const { utm, ...c } = context();
    if (attr('attributes')) {
      try { c.attributes = JSON.parse(attr('attributes')); } catch { warn('attributes', 'data-attributes is not JSON'); }
    }
    return call('decide', { visitor_id: vid, session_id: session(true).id, slots, context: c }, { signal: abort.signal })
      .then(r => late() || (r.ok ? apply(r.body) : problem(r, 'asking for a decision')), () => late() || unreachable())
      .catch(e => warn('apply', 'decision not applied: ' + e))
      .finally(() => {
        clearTimeout(timeout);
        held.forEach(e => e.dataset.maDecision || reveal(e)); // no answer for it: the default shows
      });
  }
  function apply(d) {
    if (!obj(d.slots) || typeof d.decision_id != 'string') return warn('decision', 'decision of unexpected shape: defaults kept');
    for (const [key, answer] of Object.entries(d.slots)) {
      for (const e of $$(`[data-slot="${CSS.escape(key)}"]`)) {
        try { applySlot(e, key, answer, d.decision_id); } catch (err) { warn('slot' + key, `slot ${key} left as is: ${err}`); }
      }
    }
    // A plan of live entries: the live part (signals, evaluator) loads only then.
    d.live?.[0] && part('live').then(run => run?.(d));
    emit('decision', d);
  }
  const TIMING = ['delay_ms', 'suppress', 'show', 'strategy'];
  function applySlot(e, key, answer, decisionId) {
    const c = answer?.content;
    if (!obj(c)) return warn('slot' + key, `slot ${key} left as is: no content`);
    e.dataset.maDecision = decisionId;
    e.dataset.maVariant = cut(answer.variant, 64);
    timing(e, c);
    if (answer.source?.kind == 'default') return reveal(e); // the site's own markup is the default
    let left = [], wait;
    for (const [k, v] of Object.entries(c)) {
      const spot = e.querySelector(`[data-content="${CSS.escape(k)}"]`);
      if (TIMING.includes(k)) continue;
      if (k == 'layout' && /^[\w-]+$/.test(v)) {
        e.classList.remove(...[...e.classList].filter(x => x.startsWith('layout-')));
        e.classList.add('layout-' + v);
        e.dataset.layout = v;
      } else if (k == 'attributes' && obj(v)) {
        for (const a in v) put(e, a, v[a], key);
      } else if (k == 'items' && Array.isArray(v)) {
        if (v.length) wait = part('items').then(show => show?.(e, key, v)); // no items: the defaults stay
      } else if (k == 'survey' && typeof v == 'string') {
        part('survey').then(show => show?.(e, v));
      } else if (/^(string|number)$/.test(typeof v) && (spot || ((k == 'text' || k == 'label') && !e.children.length))) {
        put(spot || e, null, v, key);
      } else {
        left.push(k);
      }
    }
    if (left.length) warn('place' + key + left, `slot ${key}: nowhere to put ${left} (data-content? <template>?); left as is`);
    wait ? wait.finally(() => reveal(e)) : reveal(e); // a held slot shows once its items are in
  }
  // Anti-flicker: a [data-ma-hide] slot is held invisible by tracker.css (visibility: hidden, so
  // nothing moves) until its page-load answer is applied, or its budget since load runs out: the
  // attribute's value in ms (at most 3000), else 300. The stylesheet alone lets it show after
  // 300 ms (3 s with a value), should this script never run. A slot already visible is never
  // hidden: that would be the flicker itself.
  const held = new Set(), reveal = e => { held.delete(e); e.removeAttribute('data-ma-hide'); e.style.animation = ''; };
  const revealAll = () => held.forEach(reveal);
  function hold() {
    for (const e of $$('[data-ma-hide]')) {
      const left = (num(e.dataset.maHide) >= 0 ? Math.min(num(e.dataset.maHide), 3000) : 300) - performance.now();
      if (left <= 0 || getComputedStyle(e).visibility != 'hidden') { reveal(e); continue; }
      held.add(e);
      e.style.animation = 'none'; // the budget is the timer's now
      setTimeout(guard(() => reveal(e)), left);
    }
  }
  // The one gate for what an answer writes into the page, slot content and items alike
  // (README, "What a variant may change"): text only as textContent, attributes only from an
  // allow-list, URLs only http(s), mailto, tel or relative, nothing in elements that load or run
  // code. Each refusal is one warning.
  function put(e, name, v, key) {
    v += '';
    let t = e.localName, why = /^(i?frame|object|embed|script|style|link|meta|base)$/i.test(t) ? 'element'
      : name == null ? ''
      : !/^(class|title|alt|lang|dir|hidden|role|target|rel|width|height|loading|placeholder|sizes|href|src|srcset|poster|aria-[a-z]+)$/.test(name) ? 'attribute'
      : /^(href|src|srcset|poster)$/.test(name) && (name == 'srcset' ? v.split(',') : [v]).some(u => !/^((https?|mailto|tel):|[/.#?])/i.test(u.trim()))
        && 'URL ' + JSON.stringify(cut(v, 100));
    // The message is also the warning's code: the same refusal again is not reported twice.
    if (why) warn(why = `slot ${key}: ${name == null ? 'text' : JSON.stringify(name)} on <${t}> refused: ${why} not allowed`, why);
    else if (name == null) e.textContent = v;
    else e.setAttribute(name, v);
  }
  // Pop-ups: [data-popup] slots start hidden and show after data-delay-ms; an answer's delay_ms
  // moves that moment (counted from page load), and suppress: true cancels it.
  const popups = new Map();
  function plan(e, delay) {
    clearTimeout(popups.get(e));
    e.dataset.maDelayMs = delay;
    popups.set(e, setTimeout(guard(() => { popups.set(e, -1); e.hidden = false; }), Math.max(0, t0 + delay - now())));
  }
  function timing(e, c) {
    if (!(popups.get(e) > 0)) return;
    if (c.suppress === true || c.show === false) {
      clearTimeout(popups.get(e));
      popups.set(e, -1);
      e.dataset.maSuppressed = '';
    } else if (num(c.delay_ms) >= 0) {
      plan(e, num(c.delay_ms));
    }
  }

  // ---- collection ------------------------------------------------------------------------------------
  const TRACKED = '[data-track],[data-slot]';
  const target = (ev, selector) => {
    const t = ev.target.closest?.(selector);
    return t && !t.closest('.ma-banner') ? t : null;
  };
  function describe(e) {
    const props = { element_id: cut(e.dataset.track || e.dataset.slot || e.id || e.tagName.toLowerCase()) };
    const section = e.closest('[data-section]'), item = e.closest('[data-item-id]');
    if (section) props.section = cut(section.dataset.section);
    if (item) props.item_id = cut(item.dataset.itemId);
    return props;
  }
  const hide = e => e.closest?.('[data-popup]')?.setAttribute('hidden', '');
  function onClick(ev) {
    const ma = ev.target.closest?.('[data-ma-consent],[data-ma-close]');
    if (ma?.hasAttribute('data-ma-consent')) banner(granted, true);
    else if (ma) hide(ma);
    const t = target(ev, TRACKED + ',a[href]');
    if (!t) return;
    const props = describe(t), text = (t.innerText || t.textContent || '').trim().replace(/\s+/g, ' ');
    if (t.href) props.href = cut(t.href, 2048);
    if (text) props.text = cut(text, 100);
    track('click', props, t);
  }
  let hover = null;
  function onOver(ev) {
    const t = target(ev, TRACKED);
    if (hover?.el == t) return;
    endHover();
    if (t) hover = { el: t, since: now() };
  }
  function endHover() {
    if (!hover) return;
    const { el, since } = hover, dwell = now() - since;
    hover = null;
    if (dwell >= HOVER_MS) track('hover', { ...describe(el), dwell_ms: Math.min(dwell, 86400000) }, el);
  }
  // Scroll depth milestones, each with the speed of the scroll that reached it (pixels per
  // second, smoothed; a pause starts a new burst).
  const scroll = { y: 0, t: 0, speed: 0, sent: {} };
  function onScroll() {
    const t = now(), y = W.scrollY, dt = t - scroll.t;
    if (dt < 50) return;
    const v = Math.abs(y - scroll.y) * 1000 / dt;
    scroll.speed = dt > 400 ? 0 : scroll.speed ? (scroll.speed + v) / 2 : v;
    Object.assign(scroll, { y, t });
    const depth = Math.min(100, Math.round((y + innerHeight) * 100 / D.documentElement.scrollHeight));
    for (const m of [25, 50, 75, 100]) {
      if (depth >= m && !scroll.sent[m]) scroll.sent[m] = track('scroll', { depth_pct: m, speed_px_s: Math.min(Math.round(scroll.speed), 1e6) });
    }
  }
  // section_view: visible time of each [data-section], counted while half of it (or half the
  // viewport) shows and the page is visible, reported each time it stops being visible.
  const sections = new Map();
  let observer = null;
  function observeSections() {
    if (observer || !W.IntersectionObserver) return;
    observer = new IntersectionObserver(guard(entries => {
      for (const en of entries) {
        const st = sections.get(en.target) || { since: 0, ms: 0 };
        sections.set(en.target, st);
        st.visible = en.isIntersecting && (en.intersectionRatio >= 0.5 || en.intersectionRect.height >= innerHeight / 2);
        if (st.visible && !st.since && !D.hidden) st.since = now();
        if (!st.visible) closeSection(st, en.target);
      }
    }), { threshold: [0, 0.25, 0.5, 0.75, 1] });
    for (const e of $$('[data-section]')) observer.observe(e);
  }
  function closeSection(st, e) {
    if (st.since) st.ms += now() - st.since;
    st.since = 0;
    if (st.ms >= SECTION_MS && track('section_view', { section: cut(e.dataset.section), visible_ms: Math.min(Math.round(st.ms), 86400000) })) st.ms = 0;
  }
  // Forms: started (first input), submitted, or abandoned (started, then the page left unsubmitted).
  // Only the form's id and a field's name are sent, never what was typed.
  const forms = new Map();
  function form(f) {
    if (!forms.has(f)) forms.set(f, { id: cut(f.id || f.getAttribute('name') || 'form-' + [...D.forms].indexOf(f)) });
    return forms.get(f);
  }
  function onInput(ev) {
    const f = ev.target.form;
    if (!f || f.classList.contains('ma-survey')) return;
    const st = form(f), field = cut(ev.target.name || ev.target.id);
    if (field) st.field = field;
    st.started ||= track('form_interaction', { form_id: st.id, action: 'start', ...(st.field && { field: st.field }) }, f);
  }
  function onSubmit(ev) {
    const f = ev.target;
    if (!(f instanceof HTMLFormElement) || f.classList.contains('ma-survey')) return;
    const st = form(f);
    st.done = true;
    track('form_interaction', { form_id: st.id, action: 'submit' }, f);
    flush(true);
  }
  function onHide(leaving) {
    endHover();
    sections.forEach(closeSection);
    if (leaving) {
      forms.forEach((st, f) => {
        if (st.started && !st.done) {
          st.done = true;
          track('form_interaction', { form_id: st.id, action: 'abandon', ...(st.field && { field: st.field }) }, f);
        }
      });
    }
    flush(true);
  }

  // ---- dataLayer: a site instrumented for a tag manager feeds the tracker unchanged ------------------
  function drain() {
    if (!ready || !dl) return;
    while (dlIndex < dl.length) {
      try { fromDataLayer(dl[dlIndex++]); } catch (e) { warn('dl' + e, 'dataLayer push ignored: ' + e); }
    }
    dlFirst = false;
  }
  function items(list = [], name) {
    if (!Array.isArray(list)) return warn('dl-items' + name, `dataLayer ${name}: items is not an array; ignored`), [];
    return list.filter(obj).map(i => {
      const it = { item_id: cut(i.item_id ?? i.id ?? '') }, quantity = num(i.quantity), price = num(i.price);
      if (quantity >= 1 && quantity % 1 == 0) it.quantity = Math.min(quantity, 1e5);
      if (price >= 0) it.price = price;
      return it;
    }).filter(i => i.item_id);
  }
  function fromDataLayer(m) {
    // GTM pushes {event, ecommerce: {…}}; gtag('event', name, params) pushes its arguments.
    const gtag = m?.[0] == 'event', name = gtag ? m[1] : m?.event;
    const p = (gtag ? m[2] : obj(m?.ecommerce) ? m.ecommerce : m) || {};
    if (typeof name != 'string') return typeof m == 'object' || warn('dl-shape', 'dataLayer push of a non-object: ignored');
    if (name == 'microadjust') return track(String(m.type), obj(m.properties) ? m.properties : {});
    const path = cut(location.pathname, 2048), list = /^(view_item|add_to_cart|purchase)$/.test(name) ? items(p.items, name) : [];
    if (/^(page_view|virtual_page_view|pageview)$/.test(name)) {
      // The page's own load is already a page view; later ones are a single-page app's.
      if (!dlFirst) track('page_view', { path: cut(p.page_path || path, 2048), title: cut(p.page_title || D.title) });
    } else if (name == 'view_item' && list[0]) {
      if (dlFirst && !pv) pageItem = list[0].item_id;
      else track('page_view', { path, item_id: list[0].item_id });
    } else if (name == 'add_to_cart') {
      for (const it of list) track('add_to_cart', it);
    } else if (name == 'purchase') {
      const revenue = num(p.value ?? p.revenue);
      if (!(revenue >= 0)) return warn('dl-purchase', 'dataLayer purchase without a value: ignored');
      track('purchase', {
        revenue, item_ids: list.map(i => i.item_id).slice(0, 200),
        ...(p.transaction_id != null && { order_id: cut(p.transaction_id) }),
        ...(/^[A-Z]{3}$/.test(p.currency) && { currency: p.currency })
      });
    } else if (/^(generate_lead|sign_up|conversion)$/.test(name)) {
      track('conversion', { goal: cut(p.goal || m.goal || name), ...(num(p.value) >= -1e12 && { value: num(p.value) }) });
    }
  }
  function hookDataLayer() {
    dl = W.dataLayer ||= [];
    if (!Array.isArray(dl)) return dl = null, warn('dl', 'window.dataLayer is not an array: not read');
    const push = dl.push;
    dl.push = function (...args) {
      const r = push.apply(this, args);
      guard(drain)();
      return r;
    };
  }

  // ---- start -----------------------------------------------------------------------------------------
  function start() {
    if (!cfg.key.startsWith('pk_')) return warn('key', 'data-key must be a publishable key (pk_…), never a secret one. Tracker off.');
    if (!W.crypto?.randomUUID) return warn('https', 'the page is not a secure context (HTTPS). Tracker off.');
    try {
      cfg.api = new URL(cfg.api || '/api/v1/', tag.src).href.replace(/\/?$/, '/');
    } catch {
      return warn('api', 'data-api is not a URL. Tracker off.');
    }
    vid = readVid();
    kept = !!vid;
    vid ||= uuid();
    hold();
    for (const e of $$('[data-popup]')) plan(e, num(e.dataset.delayMs) || 0);
    hookDataLayer();
    on(D, 'click', onClick);
    on(D, 'keydown', ev => {
      if (ev.key == 'Escape') hide(ev.target);
    });
    on(D, 'mouseover', onOver);
    on(D, 'mouseout', ev => ev.relatedTarget || endHover());
    on(W, 'scroll', onScroll);
    on(D, 'input', onInput, true);
    on(D, 'change', onInput, true);
    on(D, 'submit', onSubmit, true);
    on(D, 'visibilitychange', () => {
      if (D.hidden) onHide(false);
      else sections.forEach(st => { if (st.visible) st.since = now(); });
    });
    on(W, 'pagehide', () => onHide(true));
    setUp().catch(e => warn('setup', 'consent set-up failed: ' + e));
  }

  // What the on-demand parts may use.
  const core = {
    h, on, warn, cut, obj, send, call, problem, track, choose, put, gpc, GPC, tag, attr, applySlot,
    policy: () => policy, visitor: () => vid, session: () => session(true).id
  };
  const all = value => Object.fromEntries((policy?.purposes || []).map(p => [p.key, value]));
  const set = (purposes, method) => { closeBanner(); return choose(obj(purposes) ? purposes : {}, true, method == 'api' ? 'api' : 'banner'); };
  W.microadjust = {
    version: '1',
    visitorId: () => vid,
    sessionId: () => sess?.id,
    track: guard((type, properties) => track(String(type), obj(properties) ? properties : {})),
    decide: guard(() => { decided = false; return allowed('personalization') ? decide() : undefined; }),
    flush: guard(() => flush()),
    endSession: guard(endSession),
    _define: (name, make) => waiting[name]?.(make),
    consent: {
      policy: () => policy,
      get: () => ({ ...granted }),
      set: guard(set),
      acceptAll: guard(() => set(all(true))),
      refuseAll: guard(() => set(all(false))),
      open: guard(() => banner(granted, true))
    }
  };
  const boot = guard(start);
  if (D.readyState == 'loading') D.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
