// headsteer report explorer: hand-written, no library, no network. Reads the JSON in #hs-data.
// Steering explorer: pick mode / strategy (or the threshold baseline) / label source / class, move alpha.
// Latent browser: every alive latent, sortable, filterable by class, paginated; a click opens its card.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("hs-data").textContent);
  var S = D.steering, L = D.latents, P = D.sprite;
  // per-class tables (float32, base64): in the page, or for many classes in explorer_classes.js beside it
  var K = S.class_tables || window.HS_CLASS_TABLES || null;
  function f32(b64) {
    var s = atob(b64), b = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) { b[i] = s.charCodeAt(i); }
    return new Float32Array(b.buffer);
  }
  var CT = K && { acc: f32(K.accuracy), usage: f32(K.usage), heads: f32(K.heads), ci: f32(K.ci) };
  function at(mi, li, si, i, c) {  // flat index into (M, Ls, S, A, C)
    var d = K.shape;
    return (((mi * d[1] + li) * d[2] + si) * d[3] + i) * d[4] + c;
  }
  function ciAt(li, si, k, i, c) {  // [lo, hi] of (Ls, S, metric k, A, C, 2)
    var d = K.ci_shape, j = ((((li * d[1] + si) * d[2] + k) * d[3] + i) * d[4] + c) * 2;
    return [CT.ci[j], CT.ci[j + 1]];
  }
  var $ = function (id) { return document.getElementById(id); };
  var pct = function (v) { return (100 * v).toFixed(2) + " %"; };
  var pts = function (v) { return (v >= 0 ? "+" : "") + (100 * v).toFixed(2); };
  var signed = function (v, d) { return (v >= 0 ? "+" : "") + v.toFixed(d); };
  // Text from the data (class names) never goes through innerHTML: markup gets an empty
  // <span data-class="c"></span>, and names() fills it with textContent.
  var classSlot = function (c) { return "<span data-class=\"" + c + "\"></span>"; };
  function names(root) {
    root.querySelectorAll("[data-class]").forEach(function (e) {
      e.textContent = L.classes[parseInt(e.getAttribute("data-class"), 10)];
    });
  }

  function options(select, values, labels) {
    select.innerHTML = "";
    values.forEach(function (v, i) {
      var o = document.createElement("option");
      o.value = String(v); o.textContent = labels ? labels[i] : String(v);
      select.appendChild(o);
    });
  }

  // ---- steering explorer -------------------------------------------------------------------------
  function state() {
    return {
      mode: $("hs-mode").value, strategy: $("hs-strategy").value, source: $("hs-source").value,
      cls: $("hs-class").value === "all" ? -1 : parseInt($("hs-class").value, 10),
      i: parseInt($("hs-alpha").value, 10),
    };
  }

  function setSlider(n, start) {
    var s = $("hs-alpha");
    s.max = String(n - 1);
    s.value = String(start);
  }

  function onStrategy() {
    var t = $("hs-strategy").value === "threshold";
    if (t) { setSlider(S.threshold.values.length, S.threshold.values.indexOf(0)); }
    else { setSlider(S.alphas.length, S.alphas.indexOf(0)); }
    ["hs-mode", "hs-source"].forEach(function (id) { $(id).disabled = t; });
    $("hs-class").disabled = t || !CT;
    update();
  }

  function show(id, value, text) { var e = $(id); e.textContent = text; e.setAttribute("data-value", String(value)); }

  function point(st) {
    // -> {acc, usage, accCi, usageCi, heads, knob}; overall numbers are results.json's own.
    if (st.strategy === "threshold") {
      var T = S.threshold;
      return { acc: T.accuracy[st.i], usage: T.head_usage[st.i], heads: null,
               knob: "shift b = " + signed(T.values[st.i], 3) };
    }
    var mi = S.modes.indexOf(st.mode), li = S.sources.indexOf(st.source), si = S.strategies.indexOf(st.strategy);
    var a0 = S.alphas.indexOf(0), out = { knob: "α = " + S.alphas[st.i] };
    var c = S.curves[st.mode][st.source][st.strategy];
    var withCi = st.mode === S.mode && S.ci[st.source] && S.ci[st.source][st.strategy];
    if (st.cls < 0) {
      out.acc = c.accuracy[st.i]; out.usage = c.head_usage[st.i];
      out.heads = S.heads[mi][li][si][st.i];
      if (withCi) {
        out.accCi = S.ci[st.source][st.strategy].accuracy_delta_ci[st.i];
        out.usageCi = S.ci[st.source][st.strategy].head_usage_delta_ci[st.i];
      }
      out.acc0 = c.accuracy[a0]; out.usage0 = c.head_usage[a0];
    } else {
      var j = at(mi, li, si, st.i, st.cls), j0 = at(mi, li, si, a0, st.cls), H = K.shape[5];
      out.acc = CT.acc[j]; out.usage = CT.usage[j]; out.heads = Array.from(CT.heads.subarray(j * H, (j + 1) * H));
      out.acc0 = CT.acc[j0]; out.usage0 = CT.usage[j0];
      if (withCi) { out.accCi = ciAt(li, si, 0, st.i, st.cls); out.usageCi = ciAt(li, si, 1, st.i, st.cls); }
      out.empty = S.class_counts[st.cls] === 0;
    }
    return out;
  }

  function update() {
    var st = state(), p = point(st);
    $("hs-alpha-value").textContent = p.knob;
    show("hs-acc", p.acc, pct(p.acc));
    show("hs-usage", p.usage, p.usage.toFixed(3));
    $("hs-acc-ci").textContent = p.accCi ? "change vs α = 0: " + pts(p.acc - p.acc0) + " pts (95 % CI " +
      pts(p.accCi[0]) + " to " + pts(p.accCi[1]) + ")" : (p.acc0 !== undefined ? "change vs α = 0: " +
      pts(p.acc - p.acc0) + " pts (no CI for this mode)" : "threshold baseline: no SAE, no class");
    $("hs-usage-ci").textContent = p.usageCi ? "change vs α = 0: " + signed(p.usage - p.usage0, 3) +
      " (95 % CI " + signed(p.usageCi[0], 3) + " to " + signed(p.usageCi[1], 3) + ")" : "";
    if (p.empty) { $("hs-acc-ci").textContent = "this class has no test image"; $("hs-usage-ci").textContent = ""; }
    heads(p.heads);
    frontier(st, p);
  }

  function heads(h) {
    var box = $("hs-heads");
    if (!h) { box.innerHTML = "<p class=\"sub\">Per-head keep rates are recorded for the SAE strategies only.</p>"; return; }
    box.innerHTML = h.map(function (v, i) {
      var g = Math.round(255 - 175 * v);
      return "<div class=\"hcell\" style=\"background:rgb(" + g + "," + (g + 20 > 255 ? 255 : g + 20) + ",255)\">h" + i +
        "<br><b>" + v.toFixed(2) + "</b></div>";
    }).join("");
  }

  function frontier(st, p) {
    // accuracy against the steered layer's usage: the threshold curve, the chosen strategy's alphas, this point
    var W = 420, H = 240, m = 36, T = S.threshold, pts_ = [];
    var curve = st.strategy === "threshold" ? null : S.curves[st.mode][st.source][st.strategy];
    var accs = T.accuracy.concat(curve ? curve.accuracy : []).concat([p.acc]);
    var lo = Math.min.apply(null, accs), hi = Math.max.apply(null, accs);
    if (hi - lo < 0.005) { lo -= 0.0025; hi += 0.0025; }
    var x = function (u) { return m + u * (W - 2 * m); };
    var y = function (a) { return H - m - (a - lo) / (hi - lo) * (H - 2 * m); };
    var order = T.head_usage.map(function (u, i) { return i; }).sort(function (a, b) { return T.head_usage[a] - T.head_usage[b]; });
    var path = order.map(function (i, k) { return (k ? "L" : "M") + x(T.head_usage[i]).toFixed(1) + "," + y(T.accuracy[i]).toFixed(1); }).join("");
    if (curve) {
      pts_ = curve.head_usage.map(function (u, i) {
        return "<circle cx=\"" + x(u).toFixed(1) + "\" cy=\"" + y(curve.accuracy[i]).toFixed(1) + "\" r=\"2.5\" fill=\"#1f77b4\"/>";
      });
    }
    $("hs-frontier").innerHTML =
      "<svg width=\"" + W + "\" height=\"" + H + "\" role=\"img\" aria-label=\"accuracy against head usage\">" +
      "<rect x=\"" + m + "\" y=\"" + m + "\" width=\"" + (W - 2 * m) + "\" height=\"" + (H - 2 * m) + "\" fill=\"#fafafa\" stroke=\"#ccc\"/>" +
      "<path d=\"" + path + "\" fill=\"none\" stroke=\"#000\" stroke-width=\"2\"/>" + pts_.join("") +
      "<circle id=\"hs-here\" cx=\"" + x(p.usage).toFixed(1) + "\" cy=\"" + y(p.acc).toFixed(1) + "\" r=\"6\" fill=\"#d62728\"/>" +
      "<text x=\"" + (W / 2) + "\" y=\"" + (H - 6) + "\" text-anchor=\"middle\" font-size=\"11\">head usage, layer " + S.layer + " (0 … 1)</text>" +
      "<text x=\"10\" y=\"" + (H / 2) + "\" font-size=\"11\" transform=\"rotate(-90 10 " + (H / 2) + ")\" text-anchor=\"middle\">accuracy</text>" +
      "<text x=\"" + m + "\" y=\"" + (m - 6) + "\" font-size=\"10\">" + pct(hi) + "</text>" +
      "<text x=\"" + m + "\" y=\"" + (H - m + 12) + "\" font-size=\"10\">" + pct(lo) + "</text></svg>" +
      "<p class=\"sub\">Black: threshold baseline (every shift). Blue: this strategy at every α" +
      (st.cls >= 0 ? " (all classes)" : "") + ". Red: the point shown.</p>";
  }

  // ---- latent browser ----------------------------------------------------------------------------
  var C = L.columns, n = C.id.length, PAGE = 25, page = 0, order = [], open = -1, mine = [];
  var effectSize = C.effect.map(function (e) { return e.reduce(function (s, v) { return s + Math.abs(v); }, 0); });

  function sortLatents() {
    var key = $("lb-sort").value, cls = $("lb-class").value;
    var idx = [];
    for (var j = 0; j < n; j++) { if (cls === "all" || C.lift_class[j] === parseInt(cls, 10)) { idx.push(j); } }
    var val = {
      freq: function (j) { return C.freq[j]; }, mean: function (j) { return C.mean[j]; },
      lift: function (j) { return C.lift[j]; }, effect: function (j) { return effectSize[j]; },
    }[key];
    idx.sort(function (a, b) { return val(b) - val(a) || C.id[a] - C.id[b]; });
    order = idx; page = 0; table();
  }

  function table() {
    var pages = Math.max(1, Math.ceil(order.length / PAGE));
    page = Math.min(page, pages - 1);
    $("lb-page").textContent = "page " + (page + 1) + " of " + pages + " · " + order.length + " latents";
    $("lb-rows").innerHTML = order.slice(page * PAGE, (page + 1) * PAGE).map(function (j) {
      return "<tr class=\"lb-row\" data-j=\"" + j + "\" data-id=\"" + C.id[j] + "\"><td>#" + C.id[j] + "</td><td>" +
        (100 * C.freq[j]).toFixed(2) + " %</td><td>" + C.mean[j].toFixed(3) + "</td><td>" + C.lift[j].toFixed(2) +
        " (" + classSlot(C.lift_class[j]) + ")</td><td>" + effectSize[j].toFixed(3) + "</td></tr>";
    }).join("");
    names($("lb-rows"));
  }

  function thumb(slot, value) {
    var q = slot % P.columns, r = Math.floor(slot / P.columns), z = 2;
    return "<div class=\"th\" title=\"activation " + value.toFixed(3) + "\" style=\"width:" + P.width * z + "px;height:" +
      P.height * z + "px;background-size:" + P.columns * P.width * z + "px auto;background-position:-" + q * P.width * z +
      "px -" + r * P.height * z + "px\"></div>";
  }

  function card(j) {
    open = j;
    var bars = C.class_ids[j].map(function (c, k) {
      var f = C.class_freq[j][k];
      return "<div class=\"bar\">" + classSlot(c) + "<i style=\"width:" + (60 * f).toFixed(1) + "%\"></i><b>" +
        (100 * f).toFixed(1) + " %</b></div>";
    }).join("");
    var few = C.class_ids[j].length < L.classes.length ? " (its " + C.class_ids[j].length + " most frequent)" : "";
    var eff = C.effect[j].map(function (v, h) {
      var w = Math.min(60, Math.abs(v) * 300);
      return "<div class=\"bar\"><span>h" + h + "</span><i class=\"" + (v < 0 ? "neg" : "pos") + "\" style=\"width:" + w.toFixed(1) +
        "%\"></i><b>" + signed(v, 3) + "</b></div>";
    }).join("");
    var push = !C.push ? "" : "<div><h4>predicted logit push (α · mean activation · W d<sub>j</sub>)</h4>" +
      C.push[j].map(function (v, h) {
        var w = Math.min(60, Math.abs(v) * 20);
        return "<div class=\"bar\"><span>h" + h + "</span><i class=\"" + (v < 0 ? "neg" : "pos") + "\" style=\"width:" +
          w.toFixed(1) + "%\"></i><b class=\"push\" data-value=\"" + v + "\">" + signed(v, 3) + "</b></div>";
      }).join("") + "</div>";
    var imgs = C.top[j].map(function (s, k) { return s < 0 ? "" : thumb(s, C.top_values[j][k]); }).join("");
    $("lb-detail").innerHTML = "<h3>latent #" + C.id[j] + "</h3>" +
      "<p>fires on <b id=\"lb-freq\" data-value=\"" + C.freq[j] + "\">" + (100 * C.freq[j]).toFixed(2) + " %</b> of training images (" +
      (100 * C.fires_on_test[j]).toFixed(2) + " % of test images); mean activation when active <b id=\"lb-mean\">" +
      C.mean[j].toFixed(3) + "</b>; most specific to " + classSlot(C.lift_class[j]) + " (lift " + C.lift[j].toFixed(2) + ")</p>" +
      "<div class=\"cols\"><div><h4>frequency per class" + few + "</h4>" + bars + "</div><div><h4>head effect (keep-rate change, layer " +
      S.layer + ", α = " + D.effect_alpha + ")</h4>" + eff + "</div>" + push + "</div><h4>top activating test images</h4><div id=\"lb-images\">" +
      (imgs || "<p class=\"sub\">none: it never fires on the test set</p>") + "</div>" +
      "<p><button id=\"lb-add\" data-id=\"" + C.id[j] + "\">add #" + C.id[j] + " to your set</button></p>";
    names($("lb-detail"));
  }

  // your own latent set, as the config override that sweeps it beside the built-in strategies
  function showSet() {
    $("lb-set").textContent = "'steer.custom_sets={mine: [" + mine.join(", ") + "]}'";  // quoted for a shell
  }

  function copySet() {
    var text = $("lb-set").textContent, range = document.createRange();
    range.selectNodeContents($("lb-set"));
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    if (navigator.clipboard) { navigator.clipboard.writeText(text).catch(function () {}); }
  }

  function init() {
    var style = document.createElement("style");
    style.textContent = ".th{background-image:url(data:image/png;base64," + P.png + ");image-rendering:pixelated}";
    document.head.appendChild(style);
    options($("hs-mode"), S.modes); $("hs-mode").value = S.mode;
    options($("hs-strategy"), S.strategies.concat(["threshold"]), S.strategies.concat(["threshold baseline (no SAE)"]));
    options($("hs-source"), S.sources);
    options($("hs-class"), ["all"].concat(S.classes.map(function (c, i) { return i; })), ["all classes"].concat(S.classes));
    if (!CT) { $("hs-note").textContent = "Per-class numbers are in " + "explorer_classes.js, which is not beside this page."; }
    ["hs-mode", "hs-source", "hs-class"].forEach(function (id) { $(id).addEventListener("change", update); });
    $("hs-strategy").addEventListener("change", onStrategy);
    $("hs-alpha").addEventListener("input", update);
    options($("lb-class"), ["all"].concat(L.classes.map(function (c, i) { return i; })), ["any class"].concat(L.classes));
    $("lb-sort").addEventListener("change", sortLatents);
    $("lb-class").addEventListener("change", sortLatents);
    $("lb-prev").addEventListener("click", function () { page = Math.max(0, page - 1); table(); });
    $("lb-next").addEventListener("click", function () { page += 1; table(); });
    $("lb-detail").addEventListener("click", function (e) {
      var id = e.target.id === "lb-add" ? parseInt(e.target.getAttribute("data-id"), 10) : -1;
      if (id >= 0 && mine.indexOf(id) < 0) { mine.push(id); showSet(); }
    });
    $("lb-clear").addEventListener("click", function () { mine = []; showSet(); });
    $("lb-copy").addEventListener("click", copySet);
    showSet();
    $("lb-rows").addEventListener("click", function (e) {
      var tr = e.target.closest("tr.lb-row");
      if (tr) { card(parseInt(tr.getAttribute("data-j"), 10)); }
    });
    onStrategy();
    sortLatents();
    document.body.setAttribute("data-explorer", "ready");
  }
  init();
})();
