/*! micro-adjust tracker, recommendation items part: loaded by tracker.js when a slot's answer
 * carries items. Each item is rendered with the site's <template> (inside the slot, or
 * template[data-slot-template="<slot>"]); an element's data-field names the item field it shows
 * (as text, or as the attribute data-field-attr names), written through the core's put: the
 * same allow-list as a slot's attributes. Items are ids or objects; the JSON script element
 * named by the tag's data-catalog adds fields (name, price, url…) to ids.
 */
(() => {
  'use strict';
  const D = document;
  window.microadjust?._define?.('items', core => {
    const { warn, cut, obj, put, attr } = core;
    let catalog = {};
    if (attr('catalog')) {
      try { catalog = JSON.parse(D.getElementById(attr('catalog')).textContent) || {}; } catch { warn('catalog', 'data-catalog names no JSON script element; ignored'); }
    }
    return (slot, key, items) => {
      const tpl = slot.querySelector('template') || D.querySelector(`template[data-slot-template="${CSS.escape(key)}"]`);
      if (!tpl) return warn('items' + key, `slot ${key}: items need a <template> to render them; left as is`);
      const box = slot.querySelector('[data-items]') || tpl.parentNode;
      const nodes = items.slice(0, 48).map(item => {
        item = obj(item) ? item : { item_id: item };
        item = { ...catalog[item.item_id], ...item };
        const node = tpl.content.cloneNode(true);
        for (const field of node.querySelectorAll('[data-field]')) {
          const v = item[field.dataset.field];
          if (v == null || typeof v == 'object') continue;
          put(field, field.dataset.fieldAttr || null, v, key);
        }
        if (item.item_id != null) for (const child of node.children) child.dataset.itemId = cut(item.item_id);
        return node;
      });
      box.replaceChildren(...nodes);
      if (!tpl.isConnected) box.append(tpl); // it was among the default items replaced
    };
  });
})();
