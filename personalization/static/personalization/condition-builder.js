/* Condition builder for the admin: edits MongoDB-style JSON conditions as nested
 * all / any / none groups of clauses (attribute, operator, value). The JSON stays in the
 * form's textarea, so staff who prefer can edit it directly ("Edit JSON"). The attributes
 * offered, with their type, unit and meaning, are the server's attribute catalogue
 * (personalization/attributes.py); names such as slot.<key>.ctr are patterns. */
(function () {
  "use strict";
  var GROUPS = [["$and", "all of"], ["$or", "any of"], ["$nor", "none of"]];
  var OPS = [["$eq", "="], ["$ne", "≠"], ["$lt", "<"], ["$lte", "≤"], ["$gt", ">"],
             ["$gte", "≥"], ["$in", "is one of"], ["$nin", "is none of"],
             ["$regex", "matches"], ["$exists", "exists"]];
  var GROUP_OPS = GROUPS.map(function (g) { return g[0]; });
  var OP_NAMES = OPS.map(function (o) { return o[0]; });

  function Unsupported(message) { this.message = message; }

  function isPlainObject(v) { return v !== null && typeof v === "object" && !Array.isArray(v); }

  function parseClauses(path, value) {
    if (isPlainObject(value) && Object.keys(value).length &&
        Object.keys(value).every(function (k) { return k.charAt(0) === "$"; })) {
      return Object.keys(value).map(function (op) {
        if (OP_NAMES.indexOf(op) < 0) { throw new Unsupported("operator " + op); }
        return { kind: "clause", path: path, op: op, value: value[op] };
      });
    }
    return [{ kind: "clause", path: path, op: "$eq", value: value }];
  }

  function parseNode(cond) {
    if (!isPlainObject(cond)) { throw new Unsupported("a condition must be an object"); }
    var keys = Object.keys(cond);
    if (keys.length === 1 && GROUP_OPS.indexOf(keys[0]) >= 0) {
      if (!Array.isArray(cond[keys[0]])) { throw new Unsupported(keys[0] + " needs a list"); }
      return { kind: "group", op: keys[0], children: cond[keys[0]].map(parseNode) };
    }
    var children = [];
    keys.forEach(function (key) {
      if (key.charAt(0) === "$") { throw new Unsupported(key + " at this level"); }
      children = children.concat(parseClauses(key, cond[key]));
    });
    return children.length === 1 ? children[0] : { kind: "group", op: "$and", children: children };
  }

  function parseRoot(cond) {
    var node = parseNode(cond);
    return node.kind === "group" ? node : { kind: "group", op: "$and", children: [node] };
  }

  function serialize(node, root) {
    if (node.kind === "clause") {
      var inner = {};
      inner[node.op] = node.value;
      var out = {};
      out[node.path] = inner;
      return out;
    }
    if (root && node.op === "$and" && node.children.length === 0) { return {}; }
    var group = {};
    group[node.op] = node.children.map(function (c) { return serialize(c, false); });
    return group;
  }

  function typed(text) {
    var t = text.trim();
    if (/^-?\d+(\.\d+)?$/.test(t)) { return Number(t); }
    if (t === "true") { return true; }
    if (t === "false") { return false; }
    if (t === "null") { return null; }
    return t;
  }

  function shown(value) {
    if (Array.isArray(value)) { return value.join(", "); }
    return value === undefined ? "" : String(value);
  }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text) { e.textContent = text; }
    return e;
  }

  function select(options, value, cls) {
    var s = el("select", { "class": cls });
    options.forEach(function (o) {
      var opt = el("option", { value: o[0] }, o[1]);
      if (o[0] === value) { opt.selected = true; }
      s.appendChild(opt);
    });
    return s;
  }

  function summary(entry) {
    return entry.type + (entry.unit ? ", " + entry.unit : "") + " — " + entry.description;
  }

  function patternOf(name) {
    var parts = name.split(".").map(function (part) {
      if (part === "<path>") { return ".+"; }
      if (part.charAt(0) === "<") { return "[^.]+"; }
      return part.replace(/[\\^$*+?.()|[\]{}]/g, "\\$&");
    });
    return new RegExp("^" + parts.join("\\.") + "$");
  }

  function Builder(container, textarea, attributes) {
    this.container = container;
    this.textarea = textarea;
    this.listId = "cb-attributes-" + textarea.id;
    this.attributes = attributes.map(function (a) {
      var entry = typeof a === "string" ? { name: a, type: "", unit: "", description: "" } : a;
      entry.pattern = entry.name.indexOf("<") >= 0 ? patternOf(entry.name) : null;
      return entry;
    });
    var list = el("datalist", { id: this.listId });
    this.attributes.forEach(function (a) {
      list.appendChild(el("option", { value: a.name, label: summary(a) }));
    });
    container.appendChild(list);
    this.toolbar = el("div", { "class": "cb-toolbar" });
    this.toggle = el("button", { type: "button", "class": "cb-toggle" }, "Edit JSON");
    this.toolbar.appendChild(this.toggle);
    this.message = el("p", { "class": "cb-message" });
    this.toolbar.appendChild(this.message);
    container.appendChild(this.toolbar);
    this.tree = el("div", { "class": "cb-tree" });
    container.appendChild(this.tree);
    var self = this;
    this.toggle.addEventListener("click", function () { self.setJsonMode(!self.jsonMode); });
    this.load();
  }

  Builder.prototype.describe = function (path) {
    var found = null;
    this.attributes.forEach(function (a) {
      if (!found && (a.name === path || (a.pattern && a.pattern.test(path)))) { found = a; }
    });
    return found;
  };

  Builder.prototype.load = function () {
    var raw = this.textarea.value.trim() || "{}";
    try {
      this.root = parseRoot(JSON.parse(raw));
      this.setJsonMode(false);
    } catch (e) {
      this.root = null;
      this.setJsonMode(true, e instanceof Unsupported ?
        "The builder cannot show " + e.message + "; edit the JSON." :
        "Not valid JSON; edit it below.");
    }
  };

  Builder.prototype.setJsonMode = function (on, why) {
    if (!on && this.jsonMode) {
      try { this.root = parseRoot(JSON.parse(this.textarea.value.trim() || "{}")); } catch (e) {
        this.message.textContent = "Fix the JSON first: " + (e.message || e);
        return;
      }
    }
    this.jsonMode = on;
    this.textarea.style.display = on ? "" : "none";
    this.tree.style.display = on ? "none" : "";
    this.toggle.textContent = on ? "Use the builder" : "Edit JSON";
    this.message.textContent = why || "";
    if (!on) { this.render(); }
  };

  Builder.prototype.sync = function () {
    this.textarea.value = JSON.stringify(serialize(this.root, true), null, 2);
  };

  Builder.prototype.render = function () {
    this.tree.textContent = "";
    this.tree.appendChild(this.renderGroup(this.root, null));
  };

  Builder.prototype.renderGroup = function (group, parent) {
    var self = this;
    var box = el("div", { "class": "cb-group" });
    var head = el("div", { "class": "cb-group-head" });
    var mode = select(GROUPS, group.op, "cb-group-op");
    mode.setAttribute("aria-label", "Match");
    mode.addEventListener("change", function () { group.op = mode.value; self.sync(); });
    head.appendChild(el("span", {}, "Match "));
    head.appendChild(mode);
    var addClause = el("button", { type: "button", "class": "cb-add-clause" }, "+ condition");
    addClause.addEventListener("click", function () {
      group.children.push({ kind: "clause", path: "", op: "$eq", value: "" });
      self.sync(); self.render();
    });
    var addGroup = el("button", { type: "button", "class": "cb-add-group" }, "+ group");
    addGroup.addEventListener("click", function () {
      group.children.push({ kind: "group", op: "$or", children: [] });
      self.sync(); self.render();
    });
    head.appendChild(addClause);
    head.appendChild(addGroup);
    if (parent) {
      var remove = el("button", { type: "button", "class": "cb-remove" }, "remove group");
      remove.addEventListener("click", function () {
        parent.children.splice(parent.children.indexOf(group), 1);
        self.sync(); self.render();
      });
      head.appendChild(remove);
    }
    box.appendChild(head);
    group.children.forEach(function (child) {
      box.appendChild(child.kind === "group" ? self.renderGroup(child, group)
                                             : self.renderClause(child, group));
    });
    return box;
  };

  Builder.prototype.renderClause = function (clause, parent) {
    var self = this;
    var row = el("div", { "class": "cb-clause" });
    var path = el("input", { type: "text", "class": "cb-path", list: this.listId,
                             placeholder: "attribute, e.g. session.duration_s",
                             "aria-label": "Attribute" });
    path.value = clause.path;
    var hint = el("span", { "class": "cb-hint" });
    function showHint() {
      var entry = self.describe(clause.path);
      hint.textContent = entry ? summary(entry) : "";
      hint.title = entry ? entry.name : "";
    }
    showHint();
    path.addEventListener("input", function () {
      clause.path = path.value.trim(); showHint(); self.sync();
    });
    var op = select(OPS, clause.op, "cb-op");
    op.setAttribute("aria-label", "Operator");
    var value = el("input", { type: "text", "class": "cb-value", "aria-label": "Value" });
    value.value = shown(clause.value);
    function readValue() {
      if (clause.op === "$in" || clause.op === "$nin") {
        clause.value = value.value.split(",").filter(function (p) { return p.trim() !== ""; })
          .map(typed);
      } else if (clause.op === "$exists") {
        clause.value = value.value.trim() !== "false";
      } else if (clause.op === "$regex") {
        clause.value = value.value;
      } else {
        clause.value = typed(value.value);
      }
      self.sync();
    }
    op.addEventListener("change", function () { clause.op = op.value; readValue(); });
    value.addEventListener("input", readValue);
    var remove = el("button", { type: "button", "class": "cb-remove" }, "remove");
    remove.addEventListener("click", function () {
      parent.children.splice(parent.children.indexOf(clause), 1);
      self.sync(); self.render();
    });
    row.appendChild(path);
    row.appendChild(op);
    row.appendChild(value);
    row.appendChild(remove);
    row.appendChild(hint);
    return row;
  };

  function init() {
    var data = document.getElementById("condition-attributes");
    var attributes = data ? JSON.parse(data.textContent) : [];
    document.querySelectorAll(".condition-builder").forEach(function (container) {
      var textarea = document.getElementById(container.getAttribute("data-field"));
      if (textarea && !container.getAttribute("data-ready")) {
        container.setAttribute("data-ready", "1");
        new Builder(container, textarea, attributes);
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
