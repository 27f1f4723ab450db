/* Warren management page: a single-page client of the RabbitMQ-compatible
 * management HTTP API served beside it (/api/...). Plain JavaScript, no
 * dependencies. Views are chosen by the location hash (#/queues/<vhost>/<name>). */
'use strict';
(function () {
  var AUTH_KEY = 'warren.mgmt.auth';
  var USER_KEY = 'warren.mgmt.user';
  var REFRESH_MS = 5000;
  var CHART_SPAN_MS = 10 * 60 * 1000;
  var HISTORY_KEEP_MS = 11 * 60 * 1000;
  var MGMT_TAGS = ['management', 'policymaker', 'monitoring', 'administrator'];
  var KNOWN_TAGS = ['administrator', 'monitoring', 'policymaker', 'management', 'impersonator'];
  var OVERVIEW_QS = '?lengths_age=600&lengths_incr=5&msg_rates_age=600&msg_rates_incr=5';
  var RATE_SERIES = [
    { key: 'publish', label: 'Publish', color: '#2f80ed' },
    { key: 'confirm', label: 'Confirm', color: '#9b51e0' },
    { key: 'deliver_get', label: 'Deliver / get', color: '#27ae60' },
    { key: 'redeliver', label: 'Redelivered', color: '#f2994a' },
    { key: 'ack', label: 'Consumer ack', color: '#00a3a3' },
    { key: 'return_unroutable', label: 'Unroutable (return)', color: '#eb5757' }
  ];
  var QUEUED_SERIES = [
    { key: 'messages_ready', label: 'Ready', color: '#f2c94c' },
    { key: 'messages_unacknowledged', label: 'Unacked', color: '#2f80ed' },
    { key: 'messages', label: 'Total', color: '#6b7785' }
  ];

  var state = {
    user: null, tags: [], admin: false,
    view: null, inFlight: false, timer: null,
    history: [], lastOverview: null,
    bannerFromRefresh: false, bannerTimer: null
  };

  // ---------------------------------------------------------------- helpers
  function $(id) { return document.getElementById(id); }
  var enc = encodeURIComponent;

  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = v;
        else if (k.slice(0, 2) === 'on' && typeof v === 'function') el.addEventListener(k.slice(2), v);
        else if (k === 'value') el.value = v;
        else if (k === 'style') el.style.cssText = v;  // CSSOM: allowed under a strict style-src
        else if (k === 'checked') el.checked = !!v;
        else el.setAttribute(k, v === true ? '' : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) add(el, arguments[i]);
    return el;
  }
  function add(el, kid) {
    if (kid === null || kid === undefined || kid === false) return;
    if (Array.isArray(kid)) { kid.forEach(function (k) { add(el, k); }); return; }
    el.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  function fill(el, content) { el.textContent = ''; add(el, content); }
  function get(obj, path) {
    var parts = path.split('.');
    for (var i = 0; i < parts.length; i++) {
      if (obj === null || obj === undefined) return undefined;
      obj = obj[parts[i]];
    }
    return obj;
  }
  function b64(s) {
    var bytes = new TextEncoder().encode(s), bin = '';
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin);
  }
  function fmtNum(n) {
    if (n === null || n === undefined || n === '') return '';
    if (typeof n !== 'number') return String(n);
    return n.toLocaleString('en-US');
  }
  function fmtRate(r) {
    if (r === null || r === undefined) return '';
    var v = Math.abs(r) < 10 ? r.toFixed(1) : Math.round(r).toLocaleString('en-US');
    return v + '/s';
  }
  function fmtBytes(b) {
    if (b === null || b === undefined || typeof b !== 'number') return '';
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'], i = 0;
    while (Math.abs(b) >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return (i === 0 ? String(b) : b.toFixed(b < 10 ? 2 : 1)) + ' ' + units[i];
  }
  function fmtUptime(ms) {
    if (typeof ms !== 'number') return '';
    var s = Math.floor(ms / 1000), d = Math.floor(s / 86400), hr = Math.floor(s % 86400 / 3600),
        m = Math.floor(s % 3600 / 60);
    if (d) return d + 'd ' + hr + 'h';
    if (hr) return hr + 'h ' + m + 'm';
    return m + 'm ' + (s % 60) + 's';
  }
  function fmtTime(d) {
    function p(n) { return (n < 10 ? '0' : '') + n; }
    return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }
  function yesNo(b) { return b === undefined || b === null ? '' : (b ? 'yes' : 'no'); }
  function jsonText(v) {
    if (v === undefined || v === null) return '';
    if (typeof v === 'object') return Object.keys(v).length ? JSON.stringify(v) : '';
    return String(v);
  }
  function normTags(t) {
    if (Array.isArray(t)) return t.filter(Boolean);
    if (typeof t === 'string') return t.split(/[\s,]+/).filter(Boolean);
    return [];
  }
  function exchangeLabel(name) { return name === '' ? '(AMQP default)' : name; }
  function exchangePathName(name) { return name === '' ? 'amq.default' : name; }
  function queueHash(vhost, name) { return '#/queues/' + enc(vhost) + '/' + enc(name); }
  function exchangeHash(vhost, name) { return '#/exchanges/' + enc(vhost) + '/' + enc(exchangePathName(name)); }
  function latin1(s) { return String(s).replace(/[^\x20-\x7e\xa0-\xff]/g, '?'); }
  function debounce(fn, ms) {
    var t = null;
    return function () { clearTimeout(t); t = setTimeout(fn, ms); };
  }
  function parseLines(text, numeric) {
    // "key=value" per line -> object; digits become numbers for the keys
    // numeric(key) accepts (all keys when it is not given).
    var out = {};
    String(text || '').split(/\r?\n/).forEach(function (line) {
      var i = line.indexOf('=');
      if (!line.trim() || i < 1) return;
      var k = line.slice(0, i).trim(), v = line.slice(i + 1).trim();
      out[k] = (/^-?\d+$/.test(v) && (!numeric || numeric(k))) ? Number(v) : v;
    });
    return out;
  }

  function numericProperty(k) { return k === 'priority' || k === 'timestamp' || k === 'delivery_mode'; }

  // ---------------------------------------------------------------- API
  function ApiError(status, body) {
    this.status = status;
    this.body = body || {};
    this.message = (body && (body.reason || body.error)) || ('HTTP ' + status);
  }
  ApiError.prototype = Object.create(Error.prototype);

  function api(method, path, body, opts) {
    opts = opts || {};
    var headers = { 'Authorization': 'Basic ' + (sessionStorage.getItem(AUTH_KEY) || '') };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (opts.headers) Object.keys(opts.headers).forEach(function (k) { headers[k] = opts.headers[k]; });
    return fetch('/api' + path, {
      method: method, headers: headers, cache: 'no-store',
      credentials: 'omit',  // no browser login prompt on 401
      body: body === undefined ? undefined : JSON.stringify(body)
    }).catch(function (e) {
      throw new ApiError(0, { error: 'network', reason: 'Cannot reach the management API (' + e.message + ')' });
    }).then(function (resp) {
      return resp.text().then(function (text) {
        var data = null;
        if (text) { try { data = JSON.parse(text); } catch (e) { data = { reason: text }; } }
        if (resp.status === 401 && !opts.noLogout) {
          // 401 is also the API's answer to a user lacking a tag (e.g. "Not
          // monitor user"): only when the credentials themselves fail does
          // the page go back to the login form.
          return api('GET', '/whoami', undefined, { noLogout: true }).then(function () {
            throw new ApiError(401, data);
          }, function (e) {
            if (e.status === 401) logout((e.body && e.body.reason) || 'Login failed');
            throw new ApiError(401, data);
          });
        }
        if (!resp.ok) throw new ApiError(resp.status, data);
        return data;
      });
    });
  }
  function errText(e) {
    if (!e) return 'Unknown error';
    if (e instanceof ApiError) {
      var r = e.body && (e.body.reason || e.body.error);
      return (e.status ? e.status + ' ' : '') + (r ? String(r) : e.message);
    }
    return String(e.message || e);
  }

  // ---------------------------------------------------------------- banner
  function banner(msg, kind, fromRefresh) {
    var b = $('banner');
    clearTimeout(state.bannerTimer);
    b.className = 'banner banner-' + (kind || 'error');
    fill(b, [h('span', { 'data-testid': 'banner-text' }, msg),
      h('button', { type: 'button', class: 'banner-close', 'aria-label': 'Dismiss', onclick: clearBanner }, '\u00d7')]);
    b.hidden = false;
    state.bannerFromRefresh = !!fromRefresh;
    if (kind === 'ok') state.bannerTimer = setTimeout(clearBanner, 6000);
  }
  function clearBanner() { $('banner').hidden = true; state.bannerFromRefresh = false; }
  function ok(msg) { banner(msg, 'ok'); }
  function fail(e) { banner(errText(e), 'error'); }

  // ---------------------------------------------------------------- login
  function showLogin(msg) {
    stopTimer();
    state.view = null;
    $('view').hidden = true;
    $('view').textContent = '';
    $('tabs').hidden = true;
    $('header-info').hidden = true;
    $('app-footer').hidden = true;
    clearBanner();
    $('login').hidden = false;
    fill($('login-error'), msg || '');
    $('login-password').value = '';
    ($('login-username').value ? $('login-password') : $('login-username')).focus();
  }
  function logout(msg) {
    sessionStorage.removeItem(AUTH_KEY);
    sessionStorage.removeItem(USER_KEY);
    state.user = null;
    showLogin(msg);
  }
  function checkLogin(authValue) {
    sessionStorage.setItem(AUTH_KEY, authValue);
    return api('GET', '/whoami', undefined, { noLogout: true }).then(function (who) {
      var tags = normTags(who && who.tags);
      if (!tags.some(function (t) { return MGMT_TAGS.indexOf(t) >= 0; })) {
        logout('Not management user');
        return;
      }
      state.user = who.name;
      state.tags = tags;
      state.admin = tags.indexOf('administrator') >= 0;
      sessionStorage.setItem(USER_KEY, JSON.stringify({ name: who.name, tags: tags }));
      enterApp();
    }, function (e) {
      logout(e.status === 401 ? ((e.body && e.body.reason) || 'Login failed') : errText(e));
    });
  }
  function enterApp() {
    $('login').hidden = true;
    $('view').hidden = false;
    $('tabs').hidden = false;
    $('header-info').hidden = false;
    $('app-footer').hidden = false;
    fill($('current-user'), state.user);
    $('current-user').title = state.tags.join(', ');
    $('tab-admin').hidden = !state.admin;
    api('GET', '/overview').then(headerFromOverview, function () {});
    startTimer();
    route();
  }
  function headerFromOverview(o) {
    if (!o) return;
    if (o.node) { fill($('node-name'), o.node); document.title = 'Warren \u00b7 ' + o.node; }
    var prod = [o.product_name, o.product_version].filter(Boolean).join(' ');
    fill($('product-version'), prod);
    fill($('footer-api'), o.management_version ? 'Management API ' + o.management_version : '');
  }

  // ---------------------------------------------------------------- routing / refresh
  function parseHash() {
    var raw = location.hash.replace(/^#\/?/, '');
    if (!raw) return [];
    return raw.split('/').map(function (p) {
      try { return decodeURIComponent(p); } catch (e) { return p; }
    });
  }
  function makeView(parts) {
    switch (parts[0]) {
      case undefined: case '': case 'overview': return overviewView();
      case 'queues': return parts.length >= 3 ? queueView(parts[1], parts.slice(2).join('/')) : queuesView();
      case 'exchanges': return parts.length >= 3 ? exchangeView(parts[1], parts.slice(2).join('/')) : exchangesView();
      case 'connections': return connectionsView();
      case 'channels': return channelsView();
      case 'admin': case 'users': case 'vhosts': case 'permissions': return adminView();
      default: return notFoundView();
    }
  }
  function route() {
    if (!state.user) return;
    var view = makeView(parseHash());
    state.view = view;
    Array.prototype.forEach.call(document.querySelectorAll('#tabs a'), function (a) {
      a.classList.toggle('active', a.getAttribute('data-tab') === view.tab);
    });
    var root = $('view');
    root.textContent = '';
    clearBanner();
    if (state.flash) { ok(state.flash); state.flash = null; }
    view.mount(root);
    refresh(true);
    window.scrollTo(0, 0);
  }
  // Go to another view and say msg there (route() clears the banner).
  function navigate(hash, msg) {
    state.flash = msg;
    if (location.hash === hash) route(); else location.hash = hash;
  }
  function refresh(force) {
    var view = state.view;
    if (!view || !state.user) return Promise.resolve();
    if (state.inFlight && !force) return Promise.resolve();
    state.inFlight = true;
    return Promise.resolve().then(function () { return view.refresh(); }).then(function () {
      if (view !== state.view) return;
      fill($('refresh-info'), 'Updated ' + fmtTime(new Date()) + ' \u00b7 every 5 s');
      if (state.bannerFromRefresh) clearBanner();
    }, function (e) {
      if (view !== state.view || !state.user) return;
      banner('Refresh failed: ' + errText(e), 'error', true);
    }).then(function () { state.inFlight = false; });
  }
  function startTimer() {
    stopTimer();
    state.timer = setInterval(function () { if (!document.hidden) refresh(false); }, REFRESH_MS);
  }
  function stopTimer() { if (state.timer) clearInterval(state.timer); state.timer = null; }

  // ---------------------------------------------------------------- small UI parts
  function section(title, id, body, extra) {
    return h('section', { class: 'panel', id: id, 'data-testid': id },
      h('div', { class: 'panel-head' }, h('h2', null, title), extra || null), body);
  }
  function kvTable(rows, id) {
    return h('table', { class: 'kv', id: id },
      h('tbody', null, rows.filter(Boolean).map(function (r) {
        return h('tr', null, h('th', null, r[0]), h('td', r[2] ? { id: r[2], 'data-testid': r[2] } : null, r[1]));
      })));
  }
  function simpleTable(columns, items, opts) {
    opts = opts || {};
    if (!items || !items.length) return h('p', { class: 'empty' }, opts.empty || 'Nothing to show.');
    return h('div', { class: 'table-scroll' }, h('table', { class: 'grid', id: opts.id || null, 'data-testid': opts.id || null },
      h('thead', null, h('tr', null, columns.map(function (c) { return h('th', { class: c.cls || null }, c.label); }))),
      h('tbody', null, items.map(function (it) {
        return h('tr', opts.rowAttrs ? opts.rowAttrs(it) : null, columns.map(function (c) {
          var v = c.render ? c.render(it) : get(it, c.key);
          return h('td', { class: c.cls || null, 'data-col': c.key || null }, v);
        }));
      }))));
  }
  function bar(used, total, alarm, fmt, invert) {
    // invert: "used" is free space, the bar shows how close it is to the limit.
    var ratio = 0, label;
    fmt = fmt || fmtNum;
    if (typeof used === 'number' && typeof total === 'number' && total > 0) {
      ratio = invert ? Math.min(1, total / Math.max(used, 1)) : Math.min(1, used / total);
    }
    label = invert ? fmt(used) + ' free (limit ' + fmt(total) + ')' : fmt(used) + ' / ' + fmt(total);
    var level = alarm ? 'alarm' : (ratio > 0.8 ? 'warn' : 'good');
    return h('div', { class: 'meter meter-' + level },
      h('div', { class: 'meter-track' }, h('div', { class: 'meter-fill', style: 'width:' + (ratio * 100).toFixed(1) + '%' })),
      h('div', { class: 'meter-label' }, label));
  }
  function badge(text, kind) { return h('span', { class: 'badge badge-' + (kind || 'neutral') }, text); }
  function field(label, input) { return h('label', { class: 'field' }, h('span', null, label), input); }
  function button(text, attrs, onclick) {
    attrs = attrs || {};
    attrs.type = 'button';
    attrs.class = 'btn ' + (attrs.class || '');
    attrs.onclick = onclick;
    return h('button', attrs, text);
  }
  function vhostSelect(id) {
    var sel = h('select', { id: id, 'data-testid': id });
    api('GET', '/vhosts').then(function (vs) {
      (vs || []).forEach(function (v) { sel.appendChild(h('option', { value: v.name }, v.name)); });
      if (!sel.value && sel.options.length) sel.selectedIndex = 0;
    }, function () { sel.appendChild(h('option', { value: '/' }, '/')); });
    return sel;
  }
  function featureBadges(o, withInternal) {
    var f = [];
    if (o.durable) f.push(badge('D', 'info'));
    if (o.auto_delete) f.push(badge('AD', 'neutral'));
    if (o.exclusive) f.push(badge('Excl', 'neutral'));
    if (withInternal && o.internal) f.push(badge('I', 'neutral'));
    var args = o.arguments || {};
    Object.keys(args).forEach(function (k) {
      if (k === 'x-queue-type') return;
      f.push(h('span', { class: 'badge badge-neutral', title: k + ': ' + JSON.stringify(args[k]) }, k.replace(/^x-/, '')));
    });
    return f;
  }
  // Replace a container's content only when the data behind it changed
  // (keeps scroll positions and avoids flicker on every refresh).
  function renderIfChanged(el, data, render) {
    var key = JSON.stringify(data);
    if (el._renderKey === key) return;
    el._renderKey = key;
    fill(el, render(data));
  }

  // ---------------------------------------------------------------- paged, sortable, filterable list
  function pagedList(opts) {
    var p = opts.id;
    var st = { page: 1, pageSize: opts.pageSize || 50, name: '', regex: false,
               sort: opts.sort || '', reverse: !!opts.reverse };
    var els = {};
    function headCell(c) {
      if (!c.sort) return h('th', { class: c.cls || null }, c.label);
      var th = h('th', { class: 'sortable ' + (c.cls || ''), 'data-sort': c.sort, 'data-testid': p + '-sort-' + c.sort,
        title: 'Sort by ' + c.label, tabindex: '0', onkeydown: function (ev) {
          if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); th.click(); }
        }, onclick: function () {
          if (st.sort === c.sort) st.reverse = !st.reverse; else { st.sort = c.sort; st.reverse = !!c.sortDesc; }
          st.page = 1;
          updateHead();
          refresh(true);
        } }, c.label, h('span', { class: 'sort-ind' }));
      return th;
    }
    function updateHead() {
      Array.prototype.forEach.call(els.thead.querySelectorAll('th[data-sort]'), function (th) {
        var on = th.getAttribute('data-sort') === st.sort;
        th.classList.toggle('sorted', on);
        th.querySelector('.sort-ind').textContent = on ? (st.reverse ? ' \u25bc' : ' \u25b2') : '';
        th.setAttribute('aria-sort', on ? (st.reverse ? 'descending' : 'ascending') : 'none');
      });
    }
    function mount(root) {
      var reload = debounce(function () { st.page = 1; refresh(true); }, 300);
      els.filter = h('input', { id: p + '-filter', 'data-testid': p + '-filter', type: 'search',
        placeholder: 'Filter by name', oninput: function () { st.name = els.filter.value; reload(); } });
      els.regex = h('input', { id: p + '-regex', 'data-testid': p + '-regex', type: 'checkbox',
        onchange: function () { st.regex = els.regex.checked; st.page = 1; refresh(true); } });
      els.size = h('select', { id: p + '-page-size', 'data-testid': p + '-page-size',
        onchange: function () { st.pageSize = Number(els.size.value); st.page = 1; refresh(true); } },
        [20, 50, 100, 500].map(function (n) { return h('option', { value: String(n) }, String(n)); }));
      els.size.value = String(st.pageSize);
      els.count = h('span', { class: 'count', id: p + '-count', 'data-testid': p + '-count' });
      els.thead = h('thead', null, h('tr', null, opts.columns.map(headCell)));
      els.tbody = h('tbody', { id: p + '-rows' });
      els.prev = button('\u2039 Prev', { id: p + '-prev', 'data-testid': p + '-prev' }, function () {
        if (st.page > 1) { st.page--; refresh(true); } });
      els.next = button('Next \u203a', { id: p + '-next', 'data-testid': p + '-next' }, function () {
        st.page++; refresh(true); });
      els.info = h('span', { class: 'page-info', id: p + '-page-info', 'data-testid': p + '-page-info' });
      var toolbar = h('div', { class: 'toolbar' },
        els.filter, h('label', { class: 'check' }, els.regex, ' Regex'),
        h('span', { class: 'spacer' }), els.count,
        h('label', { class: 'inline' }, 'Page size ', els.size));
      root.appendChild(h('div', { class: 'list-wrap' }, toolbar,
        h('div', { class: 'table-scroll' }, h('table', { class: 'grid', id: p + '-table', 'data-testid': p + '-table' }, els.thead, els.tbody)),
        h('div', { class: 'pager' }, els.prev, els.info, els.next)));
      updateHead();
    }
    function query() {
      var q = '?page=' + st.page + '&page_size=' + st.pageSize + '&name=' + enc(st.name) +
        '&use_regex=' + (st.regex ? 'true' : 'false') + '&pagination=true';
      if (st.sort) q += '&sort=' + enc(st.sort) + '&sort_reverse=' + (st.reverse ? 'true' : 'false');
      return q;
    }
    function clientPage(all) {
      // For a server answering a plain array: filter, sort and page here.
      var items = all.slice(), re = null;
      if (st.name) {
        try { re = st.regex ? new RegExp(st.name) : null; } catch (e) { re = null; }
        items = items.filter(function (it) {
          var n = String(it.name || '');
          return re ? re.test(n) : n.toLowerCase().indexOf(st.name.toLowerCase()) >= 0;
        });
      }
      if (st.sort) {
        items.sort(function (a, b) {
          var x = get(a, st.sort), y = get(b, st.sort);
          var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x === undefined ? '' : x).localeCompare(String(y === undefined ? '' : y));
          return st.reverse ? -c : c;
        });
      }
      var pc = Math.max(1, Math.ceil(items.length / st.pageSize));
      if (st.page > pc) st.page = pc;
      return { items: items.slice((st.page - 1) * st.pageSize, st.page * st.pageSize), page: st.page,
        page_count: pc, filtered_count: items.length, total_count: all.length };
    }
    function load() {
      return api('GET', opts.path + query()).catch(function (e) {
        if (e.status === 400 && st.page > 1) { st.page = 1; return api('GET', opts.path + query()); }
        throw e;
      }).then(function (d) {
        if (Array.isArray(d)) return clientPage(d);
        if (d && d.page_count > 0 && st.page > d.page_count) {
          st.page = d.page_count;
          return api('GET', opts.path + query());
        }
        return d;
      });
    }
    function refreshList() {
      return load().then(function (d) {
        d = d || { items: [] };
        var items = d.items || [];
        st.page = d.page || st.page;
        var pageCount = Math.max(1, d.page_count || 1);
        fill(els.count, fmtNum(d.filtered_count !== undefined ? d.filtered_count : items.length) +
          (d.total_count !== undefined && d.filtered_count !== d.total_count ? ' of ' + fmtNum(d.total_count) : '') +
          ' ' + (opts.noun || 'items'));
        fill(els.info, 'Page ' + st.page + ' of ' + pageCount);
        els.prev.disabled = st.page <= 1;
        els.next.disabled = st.page >= pageCount;
        renderIfChanged(els.tbody, items, function () {
          if (!items.length) {
            return h('tr', { class: 'empty-row' }, h('td', { colspan: opts.columns.length },
              st.name ? 'No ' + (opts.noun || 'items') + ' match the filter.' : 'No ' + (opts.noun || 'items') + '.'));
          }
          return items.map(function (it) {
            return h('tr', opts.rowAttrs ? opts.rowAttrs(it) : null, opts.columns.map(function (c) {
              var v = c.render ? c.render(it) : get(it, c.key);
              return h('td', { class: c.cls || null, 'data-col': c.key || c.sort || null,
                'data-testid': c.testid || null }, v);
            }));
          });
        });
        if (opts.after) opts.after(d);
      });
    }
    return { mount: mount, refresh: refreshList, state: st };
  }

  // ---------------------------------------------------------------- charts
  function seriesFromSamples(samples, asRate) {
    if (!Array.isArray(samples) || samples.length < 2) return null;
    var pts = samples.map(function (s) { return [s.timestamp, s.sample]; })
      .filter(function (p) { return typeof p[0] === 'number' && typeof p[1] === 'number'; })
      .sort(function (a, b) { return a[0] - b[0]; });
    if (pts.length < 2) return null;
    if (!asRate) return pts;
    var out = [];
    for (var i = 1; i < pts.length; i++) {
      var dt = (pts[i][0] - pts[i - 1][0]) / 1000;
      if (dt > 0) out.push([pts[i][0], Math.max(0, (pts[i][1] - pts[i - 1][1]) / dt)]);
    }
    return out.length ? out : null;
  }
  function seriesFromHistory(pick) {
    var pts = [];
    state.history.forEach(function (hEntry) {
      var v = pick(hEntry);
      if (typeof v === 'number') pts.push([hEntry.t, v]);
    });
    return pts;
  }
  function rateFromHistory(key) {
    // the API's current rate if it gives one, else the difference of the counts between polls
    var pts = [], prev = null;
    state.history.forEach(function (e) {
      if (typeof e.rates[key] === 'number') pts.push([e.t, e.rates[key]]);
      else if (typeof e.counts[key] === 'number' && prev && typeof prev.counts[key] === 'number' && e.t > prev.t) {
        pts.push([e.t, Math.max(0, (e.counts[key] - prev.counts[key]) / ((e.t - prev.t) / 1000))]);
      }
      prev = e;
    });
    return pts;
  }
  function recordHistory(o) {
    var now = Date.now(), qt = o.queue_totals || {}, ms = o.message_stats || {};
    var entry = { t: now, queued: {}, counts: {}, rates: {} };
    QUEUED_SERIES.forEach(function (s) { entry.queued[s.key] = typeof qt[s.key] === 'number' ? qt[s.key] : 0; });
    RATE_SERIES.forEach(function (s) {
      if (typeof ms[s.key] === 'number') entry.counts[s.key] = ms[s.key];
      var r = get(ms, s.key + '_details.rate');
      if (typeof r === 'number') entry.rates[s.key] = r;
      else if (!Object.keys(ms).length) entry.rates[s.key] = 0;  // no traffic at all
    });
    state.history.push(entry);
    while (state.history.length && state.history[0].t < now - HISTORY_KEEP_MS) state.history.shift();
  }
  function niceStep(v, integer) {
    // a step of 1, 2 or 5 times a power of ten, at least v (and at least 1 for counts)
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
    var step = (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
    return integer ? Math.max(1, Math.round(step)) : step;
  }
  function drawChart(canvas, series, fmtY, integer) {
    var dpr = window.devicePixelRatio || 1;
    var w = canvas.clientWidth || 600, ht = canvas.clientHeight || 200;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(ht * dpr);
    var ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, ht);
    var padL = 52, padR = 12, padT = 10, padB = 24;
    var pw = w - padL - padR, ph = ht - padT - padB;
    var tMax = 0, vMax = 0, any = false;
    series.forEach(function (s) {
      s.points.forEach(function (p) { any = true; if (p[0] > tMax) tMax = p[0]; if (p[1] > vMax) vMax = p[1]; });
    });
    if (!tMax) tMax = Date.now();
    var step = niceStep((vMax || 1) / 4, integer), ticks = Math.max(1, Math.ceil((vMax || 1) / step - 1e-9));
    var tMin = tMax - CHART_SPAN_MS, yMax = step * ticks;
    function X(t) { return padL + (t - tMin) / CHART_SPAN_MS * pw; }
    function Y(v) { return padT + ph - v / yMax * ph; }
    ctx.font = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
    ctx.lineWidth = 1;
    ctx.strokeStyle = '#e4e8ee';
    ctx.fillStyle = '#6b7785';
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (var i = 0; i <= ticks; i++) {
      var v = step * i, y = Math.round(Y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(padL, y); ctx.lineTo(padL + pw, y); ctx.stroke();
      ctx.fillText(fmtY(v), padL - 6, y);
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (var m = 10; m >= 0; m -= 2) {
      var x = Math.round(X(tMax - m * 60000)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, padT); ctx.lineTo(x, padT + ph); ctx.stroke();
      ctx.fillText(m === 0 ? 'now' : '-' + m + ' min', Math.min(Math.max(x, padL + 14), padL + pw - 12), padT + ph + 6);
    }
    series.slice().reverse().forEach(function (s) {
      var pts = s.points.filter(function (p) { return p[0] >= tMin; });
      if (!pts.length) return;
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 2;
      ctx.lineJoin = 'round';
      ctx.beginPath();
      pts.forEach(function (p, j) { if (j) ctx.lineTo(X(p[0]), Y(p[1])); else ctx.moveTo(X(p[0]), Y(p[1])); });
      if (pts.length === 1) ctx.lineTo(X(pts[0][0]) + 2, Y(pts[0][1]));
      ctx.stroke();
    });
    if (!any) {
      ctx.fillStyle = '#9aa5b1';
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.font = '13px system-ui, sans-serif';
      ctx.fillText('Collecting data\u2026', padL + pw / 2, padT + ph / 2);
    }
  }
  function chartPanel(id, title) {
    var canvas = h('canvas', { id: id, 'data-testid': id, class: 'chart' });
    var legend = h('div', { class: 'legend', id: id + '-legend', 'data-testid': id + '-legend' });
    return { el: h('div', { class: 'chart-box' }, h('h3', null, title), canvas, legend), canvas: canvas, legend: legend };
  }
  function legendItems(series, fmt) {
    return series.map(function (s) {
      var last = s.points.length ? s.points[s.points.length - 1][1] : null;
      return h('span', { class: 'legend-item', 'data-series': s.key },
        h('i', { style: 'background:' + s.color }), s.label + ' ',
        h('b', { 'data-testid': 'legend-' + s.key }, last === null ? '\u2013' : fmt(last)));
    });
  }

  // ---------------------------------------------------------------- overview
  function overviewView() {
    var els = {}, charts = {};
    function card(id, label) {
      var v = h('div', { class: 'card-value', id: id, 'data-testid': id }, '\u2013');
      return h('div', { class: 'card' }, h('div', { class: 'card-label' }, label), v);
    }
    function draw() {
      var o = state.lastOverview;
      if (!o || !charts.rates) return;
      var qt = o.queue_totals || {}, ms = o.message_stats || {};
      var queued = QUEUED_SERIES.map(function (s) {
        var pts = seriesFromSamples(get(qt, s.key + '_details.samples'), false) ||
          seriesFromHistory(function (e) { return e.queued[s.key]; });
        return { key: s.key, label: s.label, color: s.color, points: pts };
      });
      var rates = RATE_SERIES.map(function (s) {
        var pts = seriesFromSamples(get(ms, s.key + '_details.samples'), true) || rateFromHistory(s.key);
        return { key: s.key, label: s.label, color: s.color, points: pts };
      });
      drawChart(charts.queued.canvas, queued, function (v) { return fmtNum(v); }, true);
      drawChart(charts.rates.canvas, rates, function (v) { return fmtNum(Math.round(v * 100) / 100) + '/s'; }, false);
      fill(charts.queued.legend, legendItems(queued, fmtNum));
      fill(charts.rates.legend, legendItems(rates, fmtRate));
    }
    function mount(root) {
      charts.queued = chartPanel('chart-queued', 'Queued messages (last ten minutes)');
      charts.rates = chartPanel('chart-rates', 'Message rates (last ten minutes)');
      els.shards = h('div', { id: 'shards-body' });
      els.shardsPanel = section('Shards', 'overview-shards', els.shards);
      els.shardsPanel.hidden = true;
      els.nodes = h('div', { id: 'nodes-body' });
      els.listeners = h('div', { id: 'listeners-body' });
      els.info = h('div', { class: 'subtle', id: 'overview-info' });
      root.appendChild(h('div', { id: 'view-overview', 'data-testid': 'view-overview' },
        h('div', { class: 'page-title' }, h('h1', null, 'Overview'), els.info),
        h('div', { class: 'cards' },
          card('total-connections', 'Connections'), card('total-channels', 'Channels'),
          card('total-exchanges', 'Exchanges'), card('total-queues', 'Queues'),
          card('total-consumers', 'Consumers')),
        h('div', { class: 'cards cards-msgs' },
          card('queued-ready', 'Ready'), card('queued-unacked', 'Unacked'),
          card('queued-total', 'Total queued'),
          card('rate-publish', 'Publish rate'), card('rate-deliver', 'Deliver/get rate'),
          card('rate-ack', 'Ack rate')),
        h('div', { class: 'charts' }, charts.queued.el, charts.rates.el),
        section('Nodes', 'overview-nodes', els.nodes),
        h('div', { class: 'two-col' },
          section('Listeners', 'overview-listeners', els.listeners),
          els.shardsPanel)));
      els.onResize = debounce(draw, 150);
      window.addEventListener('resize', els.onResize);
    }
    function setText(id, v) { var el = $(id); if (el) fill(el, v); }
    function refreshOverview() {
      return Promise.all([
        api('GET', '/overview' + OVERVIEW_QS),
        api('GET', '/nodes').catch(function (e) { return { error: e }; })
      ]).then(function (res) {
        var o = res[0] || {}, nodes = res[1];
        state.lastOverview = o;
        recordHistory(o);
        headerFromOverview(o);
        var ot = o.object_totals || {}, qt = o.queue_totals || {}, ms = o.message_stats || {};
        setText('total-connections', fmtNum(ot.connections || 0));
        setText('total-channels', fmtNum(ot.channels || 0));
        setText('total-exchanges', fmtNum(ot.exchanges || 0));
        setText('total-queues', fmtNum(ot.queues || 0));
        setText('total-consumers', fmtNum(ot.consumers || 0));
        setText('queued-ready', fmtNum(qt.messages_ready || 0));
        setText('queued-unacked', fmtNum(qt.messages_unacknowledged || 0));
        setText('queued-total', fmtNum(qt.messages || 0));
        setText('rate-publish', fmtRate(get(ms, 'publish_details.rate') || 0));
        setText('rate-deliver', fmtRate(get(ms, 'deliver_get_details.rate') || 0));
        setText('rate-ack', fmtRate(get(ms, 'ack_details.rate') || 0));
        fill(els.info, [o.cluster_name ? 'Cluster ' + o.cluster_name : null,
          o.rates_mode ? ' \u00b7 rates mode ' + o.rates_mode : null]);
        draw();
        renderIfChanged(els.listeners, o.listeners || [], function (ls) {
          return simpleTable([
            { key: 'protocol', label: 'Protocol' },
            { key: 'node', label: 'Node' },
            { key: 'ip_address', label: 'Bound to' },
            { key: 'port', label: 'Port', cls: 'num' }
          ], ls, { id: 'listeners-table', empty: 'No listeners reported.' });
        });
        if (Object.prototype.hasOwnProperty.call(o, 'shards')) {
          els.shardsPanel.hidden = false;
          renderIfChanged(els.shards, o.shards, renderAny);
        } else {
          els.shardsPanel.hidden = true;
        }
        if (nodes && nodes.error) {
          fill(els.nodes, h('p', { class: 'empty', 'data-testid': 'nodes-refused' },
            (nodes.error.status === 401 || nodes.error.status === 403) ?
            'Node details need the monitoring or administrator tag (' + errText(nodes.error) + ').' :
            'Nodes unavailable: ' + errText(nodes.error)));
          els.nodes._renderKey = null;
        } else {
          renderNodes(els.nodes, nodes || []);
        }
      });
    }
    return { tab: 'overview', mount: mount, refresh: refreshOverview };
  }
  function renderNodes(el, nodes) {
    fill(el, simpleTable([
      { label: 'Name', render: function (n) { return h('strong', null, n.name); } },
      { label: 'State', render: function (n) { return n.running === false ? badge('stopped', 'bad') : badge('running', 'good'); } },
      { label: 'Memory', cls: 'meter-cell', render: function (n) { return bar(n.mem_used, n.mem_limit, n.mem_alarm, fmtBytes); } },
      { label: 'Disk space', cls: 'meter-cell', render: function (n) { return bar(n.disk_free, n.disk_free_limit, n.disk_free_alarm, fmtBytes, true); } },
      { label: 'File descriptors', cls: 'meter-cell', render: function (n) { return bar(n.fd_used, n.fd_total, false, fmtNum); } },
      { label: 'Alarms', render: function (n) {
        var a = [];
        if (n.mem_alarm) a.push(badge('memory', 'bad'));
        if (n.disk_free_alarm) a.push(badge('disk', 'bad'));
        return a.length ? h('span', { 'data-testid': 'node-alarms' }, a) : h('span', { 'data-testid': 'node-alarms' }, badge('none', 'good'));
      } },
      { label: 'Uptime', render: function (n) { return fmtUptime(n.uptime); } }
    ], nodes, { id: 'nodes-table', empty: 'No nodes reported.', rowAttrs: function (n) {
      return { 'data-node': n.name, 'data-mem-alarm': String(!!n.mem_alarm), 'data-disk-alarm': String(!!n.disk_free_alarm) };
    } }));
  }
  function renderAny(v) {
    if (Array.isArray(v)) {
      if (!v.length) return h('p', { class: 'empty' }, 'None.');
      if (v.every(function (x) { return x && typeof x === 'object' && !Array.isArray(x); })) {
        var keys = [];
        v.forEach(function (x) { Object.keys(x).forEach(function (k) { if (keys.indexOf(k) < 0) keys.push(k); }); });
        return simpleTable(keys.map(function (k) {
          return { key: k, label: k.replace(/_/g, ' '), render: function (x) { return cellText(x[k]); },
            cls: v.every(function (x) { return typeof x[k] === 'number' || x[k] === undefined; }) ? 'num' : null };
        }), v, { id: 'shards-table' });
      }
      return h('p', null, v.map(cellText).join(', '));
    }
    if (v && typeof v === 'object') {
      return kvTable(Object.keys(v).map(function (k) {
        var x = v[k];
        return [k.replace(/_/g, ' '), (x && typeof x === 'object') ? renderAny(x) : cellText(x)];
      }), 'shards-table');
    }
    return h('p', { class: 'big' }, cellText(v));
  }
  function cellText(x) {
    if (x === undefined || x === null) return '';
    if (typeof x === 'number') return fmtNum(x);
    if (typeof x === 'boolean') return yesNo(x);
    if (typeof x === 'object') return JSON.stringify(x);
    return String(x);
  }

  // ---------------------------------------------------------------- queues
  function queuesView() {
    var list = pagedList({
      id: 'queues', path: '/queues', noun: 'queues', sort: 'name',
      rowAttrs: function (q) {
        return { 'data-testid': 'queue-row', 'data-vhost': q.vhost, 'data-name': q.name };
      },
      columns: [
        { label: 'Virtual host', sort: 'vhost', key: 'vhost' },
        { label: 'Name', sort: 'name', key: 'name', render: function (q) {
          return h('a', { href: queueHash(q.vhost, q.name), 'data-testid': 'queue-link' }, q.name);
        } },
        { label: 'Type', sort: 'type', render: function (q) { return q.type || get(q, 'arguments.x-queue-type') || 'classic'; } },
        { label: 'Features', render: function (q) { return featureBadges(q); } },
        { label: 'State', sort: 'state', render: function (q) {
          return q.state ? badge(q.state, q.state === 'running' ? 'good' : (q.state === 'idle' ? 'neutral' : 'warn')) : '';
        } },
        { label: 'Consumers', sort: 'consumers', sortDesc: true, cls: 'num', render: function (q) { return fmtNum(q.consumers); } },
        { label: 'Ready', sort: 'messages_ready', sortDesc: true, cls: 'num', testid: 'queue-ready', render: function (q) { return fmtNum(q.messages_ready); } },
        { label: 'Unacked', sort: 'messages_unacknowledged', sortDesc: true, cls: 'num', testid: 'queue-unacked', render: function (q) { return fmtNum(q.messages_unacknowledged); } },
        { label: 'Total', sort: 'messages', sortDesc: true, cls: 'num', testid: 'queue-messages', render: function (q) { return fmtNum(q.messages); } },
        { label: 'Incoming', sort: 'message_stats.publish_details.rate', sortDesc: true, cls: 'num', render: function (q) { return fmtRate(get(q, 'message_stats.publish_details.rate')); } },
        { label: 'Deliver / get', sort: 'message_stats.deliver_get_details.rate', sortDesc: true, cls: 'num', render: function (q) { return fmtRate(get(q, 'message_stats.deliver_get_details.rate')); } },
        { label: 'Ack', sort: 'message_stats.ack_details.rate', sortDesc: true, cls: 'num', render: function (q) { return fmtRate(get(q, 'message_stats.ack_details.rate')); } }
      ]
    });
    function addForm() {
      var vh = vhostSelect('add-queue-vhost');
      var name = h('input', { id: 'add-queue-name', 'data-testid': 'add-queue-name', required: true });
      var type = h('select', { id: 'add-queue-type' }, h('option', { value: 'classic' }, 'Classic'), h('option', { value: 'quorum' }, 'Quorum'));
      var durable = h('select', { id: 'add-queue-durable' }, h('option', { value: 'true' }, 'Durable'), h('option', { value: 'false' }, 'Transient'));
      var autoDel = h('select', { id: 'add-queue-autodelete' }, h('option', { value: 'false' }, 'No'), h('option', { value: 'true' }, 'Yes'));
      var form = h('form', { class: 'form-row', id: 'add-queue-form', onsubmit: function (ev) {
        ev.preventDefault();
        if (!name.value) return;
        var body = { durable: durable.value === 'true', auto_delete: autoDel.value === 'true', arguments: {} };
        if (type.value !== 'classic') { body.arguments['x-queue-type'] = type.value; body.durable = true; }
        api('PUT', '/queues/' + enc(vh.value) + '/' + enc(name.value), body).then(function () {
          ok('Queue "' + name.value + '" declared.');
          name.value = '';
          refresh(true);
        }, fail);
      } }, field('Virtual host', vh), field('Name', name), field('Type', type), field('Durability', durable),
        field('Auto delete', autoDel), h('button', { type: 'submit', class: 'btn btn-primary', id: 'add-queue-submit' }, 'Add queue'));
      return form;
    }
    return {
      tab: 'queues',
      mount: function (root) {
        var body = h('div');
        root.appendChild(h('div', { id: 'view-queues', 'data-testid': 'view-queues' },
          h('div', { class: 'page-title' }, h('h1', null, 'Queues')), body,
          section('Add a queue', 'add-queue', addForm())));
        list.mount(body);
      },
      refresh: list.refresh
    };
  }

  function queueView(vhost, name) {
    var base = '/queues/' + enc(vhost) + '/' + enc(name);
    var els = {};
    function messageForm() {
      var count = h('input', { id: 'get-count', 'data-testid': 'get-count', type: 'number', min: '1', value: '1' });
      var ackmode = h('select', { id: 'get-ackmode', 'data-testid': 'get-ackmode' },
        h('option', { value: 'ack_requeue_true' }, 'Nack, requeue'),
        h('option', { value: 'ack_requeue_false' }, 'Ack (remove from queue)'),
        h('option', { value: 'reject_requeue_true' }, 'Reject, requeue'),
        h('option', { value: 'reject_requeue_false' }, 'Reject, no requeue'));
      var encoding = h('select', { id: 'get-encoding', 'data-testid': 'get-encoding' },
        h('option', { value: 'auto' }, 'Auto (string if UTF-8, else base64)'), h('option', { value: 'base64' }, 'Base64'));
      var truncate = h('input', { id: 'get-truncate', type: 'number', min: '1', value: '50000' });
      els.getResults = h('div', { id: 'get-results', 'data-testid': 'get-results' });
      var form = h('form', { class: 'form-row', id: 'get-form', onsubmit: function (ev) {
        ev.preventDefault();
        var body = { count: Math.max(1, Number(count.value) || 1), ackmode: ackmode.value, encoding: encoding.value };
        if (truncate.value) body.truncate = Number(truncate.value);
        api('POST', base + '/get', body).then(function (msgs) {
          renderMessages(msgs || []);
          refresh(true);
        }, fail);
      } }, field('Messages', count), field('Ack mode', ackmode), field('Encoding', encoding),
        field('Truncate at (bytes)', truncate),
        h('button', { type: 'submit', class: 'btn btn-primary', id: 'get-messages', 'data-testid': 'get-messages' }, 'Get messages'));
      return [form, els.getResults];
    }
    function renderMessages(msgs) {
      if (!msgs.length) { fill(els.getResults, h('p', { class: 'empty', 'data-testid': 'get-empty' }, 'Queue is empty.')); return; }
      fill(els.getResults, msgs.map(function (m, i) {
        return h('div', { class: 'message', 'data-testid': 'message' },
          h('div', { class: 'message-head' }, 'Message ' + (i + 1),
            m.message_count !== undefined ? h('span', { class: 'subtle' }, ' \u00b7 ' + fmtNum(m.message_count) + ' left in queue') : null),
          kvTable([
            ['Exchange', exchangeLabel(m.exchange)],
            ['Routing key', m.routing_key],
            ['Redelivered', yesNo(m.redelivered)],
            ['Properties', h('code', null, jsonText(m.properties))],
            ['Payload', h('span', null, fmtNum(m.payload_bytes) + ' bytes, encoding: ' + (m.payload_encoding || ''))]
          ]),
          h('pre', { class: 'payload', 'data-testid': 'message-payload' }, m.payload));
      }));
    }
    function publishForm() {
      var mode = h('select', { id: 'queue-publish-mode', 'data-testid': 'queue-publish-mode' },
        h('option', { value: '1' }, '1 - Non-persistent'), h('option', { value: '2' }, '2 - Persistent'));
      var headers = h('textarea', { id: 'queue-publish-headers', rows: '2', placeholder: 'header=value, one per line' });
      var props = h('textarea', { id: 'queue-publish-props', rows: '2', placeholder: 'content_type=text/plain, one per line' });
      var payload = h('textarea', { id: 'queue-publish-payload', 'data-testid': 'queue-publish-payload', rows: '3' });
      return h('form', { class: 'form-grid', id: 'queue-publish-form', onsubmit: function (ev) {
        ev.preventDefault();
        var properties = parseLines(props.value, numericProperty);
        properties.delivery_mode = Number(mode.value);
        var hd = parseLines(headers.value);
        if (Object.keys(hd).length) properties.headers = hd;
        api('POST', '/exchanges/' + enc(vhost) + '/amq.default/publish', {
          properties: properties, routing_key: name, payload: payload.value, payload_encoding: 'string'
        }).then(function (r) {
          if (r && r.routed === false) banner('Message published, but not routed.', 'warn');
          else ok('Message published.');
          refresh(true);
        }, fail);
      } }, field('Delivery mode', mode), field('Headers', headers), field('Properties', props),
        field('Payload', payload),
        h('div', { class: 'form-actions' },
          h('button', { type: 'submit', class: 'btn btn-primary', id: 'queue-publish', 'data-testid': 'queue-publish' }, 'Publish message')));
    }
    function bindForm() {
      var ex = h('input', { id: 'bind-exchange', 'data-testid': 'bind-exchange', placeholder: 'exchange name', required: true });
      var rk = h('input', { id: 'bind-routing-key', 'data-testid': 'bind-routing-key' });
      return h('form', { class: 'form-row', id: 'bind-form', onsubmit: function (ev) {
        ev.preventDefault();
        if (!ex.value) return;
        api('POST', '/bindings/' + enc(vhost) + '/e/' + enc(ex.value) + '/q/' + enc(name),
          { routing_key: rk.value, arguments: {} }).then(function () {
          ok('Bound to "' + ex.value + '".');
          ex.value = ''; rk.value = '';
          refresh(true);
        }, fail);
      } }, field('From exchange', ex), field('Routing key', rk),
        h('button', { type: 'submit', class: 'btn', id: 'bind-submit' }, 'Bind'));
    }
    function dangerZone() {
      var ifEmpty = h('input', { type: 'checkbox', id: 'delete-if-empty' });
      var ifUnused = h('input', { type: 'checkbox', id: 'delete-if-unused' });
      return h('div', { class: 'danger-row' },
        button('Purge messages', { id: 'queue-purge', 'data-testid': 'queue-purge', class: 'btn-warn' }, function () {
          if (!window.confirm('Purge all messages from queue "' + name + '"?')) return;
          api('DELETE', base + '/contents').then(function () {
            ok('Queue "' + name + '" purged.');
            refresh(true);
          }, fail);
        }),
        h('span', { class: 'spacer' }),
        h('label', { class: 'check' }, ifEmpty, ' only if empty'),
        h('label', { class: 'check' }, ifUnused, ' only if unused'),
        button('Delete queue', { id: 'queue-delete', 'data-testid': 'queue-delete', class: 'btn-danger' }, function () {
          if (!window.confirm('Delete queue "' + name + '"?')) return;
          var qs = [];
          if (ifEmpty.checked) qs.push('if-empty=true');
          if (ifUnused.checked) qs.push('if-unused=true');
          api('DELETE', base + (qs.length ? '?' + qs.join('&') : '')).then(function () {
            navigate('#/queues', 'Queue "' + name + '" deleted.');
          }, fail);
        }));
    }
    function mount(root) {
      els.details = h('div', { id: 'queue-details' });
      els.consumers = h('div', { id: 'queue-consumers' });
      els.bindings = h('div', { id: 'queue-bindings' });
      els.missing = h('div', { id: 'queue-missing' });
      els.counts = h('div', { id: 'queue-counts' });
      els.body = h('div', null,
        h('div', { class: 'two-col' }, section('Details', 'queue-details-panel', els.details),
          section('Messages', 'queue-counts-panel', els.counts)),
        section('Consumers', 'queue-consumers-panel', els.consumers),
        section('Bindings', 'queue-bindings-panel', [els.bindings, bindForm()]),
        section('Get messages', 'queue-get-panel', messageForm()),
        section('Publish message', 'queue-publish-panel',
          [h('p', { class: 'subtle' }, 'Published to the default exchange with routing key "' + name + '".'), publishForm()]),
        section('Purge / delete', 'queue-actions-panel', dangerZone()));
      root.appendChild(h('div', { id: 'view-queue', 'data-testid': 'view-queue', 'data-vhost': vhost, 'data-name': name },
        h('div', { class: 'crumbs' }, h('a', { href: '#/queues', id: 'back-to-queues' }, 'Queues'), ' / ', vhost),
        h('div', { class: 'page-title' }, h('h1', null, 'Queue ', h('span', { id: 'queue-name', 'data-testid': 'queue-name' }, name)),
          h('span', { class: 'subtle' }, 'virtual host ' + vhost)),
        els.missing, els.body));
    }
    function refreshQueue() {
      return Promise.all([
        api('GET', base),
        api('GET', base + '/bindings').catch(function () { return null; })
      ]).then(function (res) {
        var q = res[0], bindings = res[1];
        fill(els.missing, '');
        els.body.hidden = false;
        var rate = function (k) { return fmtRate(get(q, 'message_stats.' + k + '_details.rate') || 0); };
        fill(els.details, kvTable([
          ['Type', q.type || get(q, 'arguments.x-queue-type') || 'classic'],
          ['Features', h('span', null, featureBadges(q), ' ', jsonText(q.arguments))],
          ['State', q.state || ''],
          ['Node', q.node || ''],
          q.policy ? ['Policy', q.policy] : null,
          q.exclusive_consumer_tag ? ['Exclusive owner', q.exclusive_consumer_tag] : null,
          ['Consumers', fmtNum(q.consumers || 0), 'queue-consumers-count'],
          q.memory !== undefined ? ['Memory', fmtBytes(q.memory)] : null
        ], 'queue-details-table'));
        fill(els.counts, kvTable([
          ['Ready', fmtNum(q.messages_ready || 0), 'queue-messages-ready'],
          ['Unacked', fmtNum(q.messages_unacknowledged || 0), 'queue-messages-unacked'],
          ['Total', h('strong', null, fmtNum(q.messages || 0)), 'queue-messages'],
          q.message_bytes !== undefined ? ['Message bytes', fmtBytes(q.message_bytes)] : null,
          ['Publish rate', rate('publish')],
          ['Deliver / get rate', rate('deliver_get')],
          ['Ack rate', rate('ack')]
        ], 'queue-counts-table'));
        renderIfChanged(els.consumers, q.consumer_details || [], function (cs) {
          return simpleTable([
            { label: 'Channel', render: function (c) { return get(c, 'channel_details.name') || ''; } },
            { key: 'consumer_tag', label: 'Consumer tag' },
            { label: 'Ack required', render: function (c) { return yesNo(c.ack_required); } },
            { label: 'Exclusive', render: function (c) { return yesNo(c.exclusive); } },
            { key: 'prefetch_count', label: 'Prefetch', cls: 'num' },
            { label: 'Arguments', render: function (c) { return jsonText(c.arguments); } }
          ], cs, { id: 'queue-consumers-table', empty: 'No consumers.' });
        });
        if (bindings) {
          renderIfChanged(els.bindings, bindings, function (bs) {
            return simpleTable([
              { label: 'From', render: function (b) {
                return h('a', { href: exchangeHash(vhost, b.source) }, exchangeLabel(b.source));
              } },
              { key: 'routing_key', label: 'Routing key' },
              { label: 'Arguments', render: function (b) { return jsonText(b.arguments); } },
              { label: '', render: function (b) {
                if (b.source === '') return h('span', { class: 'subtle' }, '(default binding)');
                return button('Unbind', { class: 'btn-small' }, function () {
                  api('DELETE', '/bindings/' + enc(vhost) + '/e/' + enc(b.source) + '/q/' + enc(name) + '/' +
                    enc(b.properties_key || '~')).then(function () { ok('Unbound.'); refresh(true); }, fail);
                });
              } }
            ], bs, { id: 'queue-bindings-table', empty: 'No bindings.' });
          });
        }
      }, function (e) {
        if (e.status === 404) {
          els.body.hidden = true;
          fill(els.missing, h('div', { class: 'panel notice', 'data-testid': 'queue-not-found' },
            'Queue "' + name + '" does not exist in virtual host "' + vhost + '". ',
            h('a', { href: '#/queues' }, 'Back to queues')));
          return;
        }
        throw e;
      });
    }
    return { tab: 'queues', mount: mount, refresh: refreshQueue };
  }

  // ---------------------------------------------------------------- exchanges
  function exchangesView() {
    var list = pagedList({
      id: 'exchanges', path: '/exchanges', noun: 'exchanges', sort: 'name',
      rowAttrs: function (x) { return { 'data-testid': 'exchange-row', 'data-vhost': x.vhost, 'data-name': x.name }; },
      columns: [
        { label: 'Virtual host', sort: 'vhost', key: 'vhost' },
        { label: 'Name', sort: 'name', render: function (x) {
          return h('a', { href: exchangeHash(x.vhost, x.name), 'data-testid': 'exchange-link' }, exchangeLabel(x.name));
        } },
        { label: 'Type', sort: 'type', key: 'type' },
        { label: 'Features', render: function (x) { return featureBadges(x, true); } },
        { label: 'Rate in', sort: 'message_stats.publish_in_details.rate', sortDesc: true, cls: 'num', render: function (x) { return fmtRate(get(x, 'message_stats.publish_in_details.rate')); } },
        { label: 'Rate out', sort: 'message_stats.publish_out_details.rate', sortDesc: true, cls: 'num', render: function (x) { return fmtRate(get(x, 'message_stats.publish_out_details.rate')); } }
      ]
    });
    function addForm() {
      var vh = vhostSelect('add-exchange-vhost');
      var name = h('input', { id: 'add-exchange-name', 'data-testid': 'add-exchange-name', required: true });
      var types = ((state.lastOverview && state.lastOverview.exchange_types) || [])
        .map(function (t) { return t.name; });
      if (!types.length) types = ['direct', 'fanout', 'headers', 'topic'];
      var type = h('select', { id: 'add-exchange-type' }, types.map(function (t) { return h('option', { value: t }, t); }));
      var durable = h('select', { id: 'add-exchange-durable' }, h('option', { value: 'true' }, 'Durable'), h('option', { value: 'false' }, 'Transient'));
      var autoDel = h('select', { id: 'add-exchange-autodelete' }, h('option', { value: 'false' }, 'No'), h('option', { value: 'true' }, 'Yes'));
      var internal = h('select', { id: 'add-exchange-internal' }, h('option', { value: 'false' }, 'No'), h('option', { value: 'true' }, 'Yes'));
      return h('form', { class: 'form-row', id: 'add-exchange-form', onsubmit: function (ev) {
        ev.preventDefault();
        if (!name.value) return;
        api('PUT', '/exchanges/' + enc(vh.value) + '/' + enc(name.value), {
          type: type.value, durable: durable.value === 'true', auto_delete: autoDel.value === 'true',
          internal: internal.value === 'true', arguments: {}
        }).then(function () { ok('Exchange "' + name.value + '" declared.'); name.value = ''; refresh(true); }, fail);
      } }, field('Virtual host', vh), field('Name', name), field('Type', type), field('Durability', durable),
        field('Auto delete', autoDel), field('Internal', internal),
        h('button', { type: 'submit', class: 'btn btn-primary', id: 'add-exchange-submit' }, 'Add exchange'));
    }
    return {
      tab: 'exchanges',
      mount: function (root) {
        var body = h('div');
        root.appendChild(h('div', { id: 'view-exchanges', 'data-testid': 'view-exchanges' },
          h('div', { class: 'page-title' }, h('h1', null, 'Exchanges')), body,
          section('Add an exchange', 'add-exchange', addForm())));
        list.mount(body);
      },
      refresh: list.refresh
    };
  }

  function exchangeView(vhost, pathName) {
    var name = pathName === 'amq.default' ? '' : pathName;
    var base = '/exchanges/' + enc(vhost) + '/' + enc(exchangePathName(name));
    var els = {};
    function publishForm() {
      var rk = h('input', { id: 'exchange-publish-rk', 'data-testid': 'exchange-publish-rk' });
      var mode = h('select', { id: 'exchange-publish-mode', 'data-testid': 'exchange-publish-mode' },
        h('option', { value: '1' }, '1 - Non-persistent'), h('option', { value: '2' }, '2 - Persistent'));
      var headers = h('textarea', { id: 'exchange-publish-headers', rows: '2', placeholder: 'header=value, one per line' });
      var props = h('textarea', { id: 'exchange-publish-props', rows: '2', placeholder: 'content_type=text/plain, one per line' });
      var payload = h('textarea', { id: 'exchange-publish-payload', 'data-testid': 'exchange-publish-payload', rows: '3' });
      var penc = h('select', { id: 'exchange-publish-encoding' }, h('option', { value: 'string' }, 'String'), h('option', { value: 'base64' }, 'Base64'));
      els.publishResult = h('div', { id: 'exchange-publish-result', 'data-testid': 'exchange-publish-result', class: 'result' });
      return [h('form', { class: 'form-grid', id: 'exchange-publish-form', onsubmit: function (ev) {
        ev.preventDefault();
        var properties = parseLines(props.value, numericProperty);
        properties.delivery_mode = Number(mode.value);
        var hd = parseLines(headers.value);
        if (Object.keys(hd).length) properties.headers = hd;
        api('POST', base + '/publish', { properties: properties, routing_key: rk.value, payload: payload.value,
          payload_encoding: penc.value }).then(function (r) {
          var routed = !(r && r.routed === false);
          els.publishResult.className = 'result ' + (routed ? 'result-ok' : 'result-warn');
          els.publishResult.setAttribute('data-routed', String(routed));
          fill(els.publishResult, routed ? 'Message published.' : 'Message published, but not routed.');
          refresh(true);
        }, function (e) {
          els.publishResult.className = 'result result-error';
          els.publishResult.removeAttribute('data-routed');
          fill(els.publishResult, errText(e));
        });
      } }, field('Routing key', rk), field('Delivery mode', mode), field('Headers', headers),
        field('Properties', props), field('Payload', payload), field('Payload encoding', penc),
        h('div', { class: 'form-actions' },
          h('button', { type: 'submit', class: 'btn btn-primary', id: 'exchange-publish', 'data-testid': 'exchange-publish' }, 'Publish message'))),
        els.publishResult];
    }
    function mount(root) {
      els.details = h('div', { id: 'exchange-details' });
      els.bindings = h('div', { id: 'exchange-bindings' });
      els.missing = h('div');
      var deletable = name !== '' && name.indexOf('amq.') !== 0;
      els.body = h('div', null,
        h('div', { class: 'two-col' }, section('Details', 'exchange-details-panel', els.details),
          section('Bindings from this exchange', 'exchange-bindings-panel', els.bindings)),
        section('Publish message', 'exchange-publish-panel', publishForm()),
        deletable ? section('Delete', 'exchange-actions-panel', h('div', { class: 'danger-row' },
          button('Delete exchange', { id: 'exchange-delete', 'data-testid': 'exchange-delete', class: 'btn-danger' }, function () {
            if (!window.confirm('Delete exchange "' + name + '"?')) return;
            api('DELETE', base).then(function () { navigate('#/exchanges', 'Exchange "' + name + '" deleted.'); }, fail);
          }))) : null);
      root.appendChild(h('div', { id: 'view-exchange', 'data-testid': 'view-exchange', 'data-vhost': vhost, 'data-name': name },
        h('div', { class: 'crumbs' }, h('a', { href: '#/exchanges' }, 'Exchanges'), ' / ', vhost),
        h('div', { class: 'page-title' }, h('h1', null, 'Exchange ', h('span', { id: 'exchange-name', 'data-testid': 'exchange-name' }, exchangeLabel(name))),
          h('span', { class: 'subtle' }, 'virtual host ' + vhost)),
        els.missing, els.body));
    }
    function refreshExchange() {
      return Promise.all([
        api('GET', base),
        api('GET', base + '/bindings/source').catch(function () { return null; })
      ]).then(function (res) {
        var x = res[0], bs = res[1];
        fill(els.missing, '');
        els.body.hidden = false;
        fill(els.details, kvTable([
          ['Type', x.type],
          ['Features', h('span', null, featureBadges(x, true), ' ', jsonText(x.arguments))],
          x.policy ? ['Policy', x.policy] : null,
          ['Rate in', fmtRate(get(x, 'message_stats.publish_in_details.rate') || 0)],
          ['Rate out', fmtRate(get(x, 'message_stats.publish_out_details.rate') || 0)]
        ], 'exchange-details-table'));
        if (name === '') {
          fill(els.bindings, h('p', { class: 'subtle' }, 'The default exchange is implicitly bound to every queue, with the queue name as routing key.'));
        } else if (bs) {
          renderIfChanged(els.bindings, bs, function () {
            return simpleTable([
              { label: 'To', render: function (b) {
                return b.destination_type === 'queue' ? h('a', { href: queueHash(vhost, b.destination) }, b.destination)
                  : h('a', { href: exchangeHash(vhost, b.destination) }, b.destination);
              } },
              { key: 'destination_type', label: 'Type' },
              { key: 'routing_key', label: 'Routing key' },
              { label: 'Arguments', render: function (b) { return jsonText(b.arguments); } }
            ], bs, { id: 'exchange-bindings-table', empty: 'No bindings.' });
          });
        }
      }, function (e) {
        if (e.status === 404) {
          els.body.hidden = true;
          fill(els.missing, h('div', { class: 'panel notice', 'data-testid': 'exchange-not-found' },
            'Exchange "' + name + '" does not exist in virtual host "' + vhost + '". ', h('a', { href: '#/exchanges' }, 'Back to exchanges')));
          return;
        }
        throw e;
      });
    }
    return { tab: 'exchanges', mount: mount, refresh: refreshExchange };
  }

  // ---------------------------------------------------------------- connections / channels
  function connectionsView() {
    var list = pagedList({
      id: 'connections', path: '/connections', noun: 'connections', sort: 'name',
      rowAttrs: function (c) { return { 'data-testid': 'connection-row', 'data-name': c.name }; },
      columns: [
        { label: 'Name', sort: 'name', render: function (c) { return h('span', { class: 'mono' }, c.name); } },
        { label: 'Virtual host', sort: 'vhost', key: 'vhost' },
        { label: 'User', sort: 'user', key: 'user' },
        { label: 'State', sort: 'state', render: function (c) {
          return c.state ? badge(c.state, c.state === 'running' ? 'good' : (c.state === 'blocked' || c.state === 'blocking' ? 'bad' : 'warn')) : '';
        } },
        { label: 'Protocol', sort: 'protocol', key: 'protocol' },
        { label: 'Client', render: function (c) {
          var p = c.client_properties || {};
          return [p.product, p.version].filter(Boolean).join(' ');
        } },
        { label: 'Channels', sort: 'channels', sortDesc: true, cls: 'num', render: function (c) { return fmtNum(c.channels); } },
        { label: 'From client', sort: 'recv_oct_details.rate', sortDesc: true, cls: 'num', render: function (c) {
          var r = get(c, 'recv_oct_details.rate'); return r === undefined ? '' : fmtBytes(Math.round(r)) + '/s';
        } },
        { label: 'To client', sort: 'send_oct_details.rate', sortDesc: true, cls: 'num', render: function (c) {
          var r = get(c, 'send_oct_details.rate'); return r === undefined ? '' : fmtBytes(Math.round(r)) + '/s';
        } },
        { label: '', render: function (c) {
          return button('Close', { class: 'btn-small btn-danger', 'data-testid': 'connection-close' }, function () {
            var reason = window.prompt('Close connection ' + c.name + '?\nReason:', 'Closed via management plugin');
            if (reason === null) return;
            api('DELETE', '/connections/' + enc(c.name), undefined, { headers: { 'X-Reason': latin1(reason) } })
              .then(function () { ok('Connection closed.'); refresh(true); }, fail);
          });
        } }
      ]
    });
    return {
      tab: 'connections',
      mount: function (root) {
        var body = h('div');
        root.appendChild(h('div', { id: 'view-connections', 'data-testid': 'view-connections' },
          h('div', { class: 'page-title' }, h('h1', null, 'Connections')), body));
        list.mount(body);
      },
      refresh: list.refresh
    };
  }

  function channelsView() {
    var list = pagedList({
      id: 'channels', path: '/channels', noun: 'channels', sort: 'name',
      rowAttrs: function (c) { return { 'data-testid': 'channel-row', 'data-name': c.name }; },
      columns: [
        { label: 'Channel', sort: 'name', render: function (c) { return h('span', { class: 'mono' }, c.name); } },
        { label: 'Virtual host', sort: 'vhost', key: 'vhost' },
        { label: 'User', sort: 'user', key: 'user' },
        { label: 'Mode', render: function (c) {
          return [c.confirm ? badge('confirm', 'info') : null, c.transactional ? badge('tx', 'info') : null];
        } },
        { label: 'State', sort: 'state', render: function (c) { return c.state ? badge(c.state, c.state === 'running' ? 'good' : 'neutral') : ''; } },
        { label: 'Consumers', sort: 'consumer_count', sortDesc: true, cls: 'num', render: function (c) { return fmtNum(c.consumer_count); } },
        { label: 'Prefetch', sort: 'prefetch_count', cls: 'num', render: function (c) { return fmtNum(c.prefetch_count); } },
        { label: 'Unacked', sort: 'messages_unacknowledged', sortDesc: true, cls: 'num', render: function (c) { return fmtNum(c.messages_unacknowledged); } },
        { label: 'Unconfirmed', sort: 'messages_unconfirmed', sortDesc: true, cls: 'num', render: function (c) { return fmtNum(c.messages_unconfirmed); } },
        { label: 'Publish', sort: 'message_stats.publish_details.rate', sortDesc: true, cls: 'num', render: function (c) { return fmtRate(get(c, 'message_stats.publish_details.rate')); } },
        { label: 'Deliver / get', sort: 'message_stats.deliver_get_details.rate', sortDesc: true, cls: 'num', render: function (c) { return fmtRate(get(c, 'message_stats.deliver_get_details.rate')); } },
        { label: 'Ack', sort: 'message_stats.ack_details.rate', sortDesc: true, cls: 'num', render: function (c) { return fmtRate(get(c, 'message_stats.ack_details.rate')); } }
      ]
    });
    return {
      tab: 'channels',
      mount: function (root) {
        var body = h('div');
        root.appendChild(h('div', { id: 'view-channels', 'data-testid': 'view-channels' },
          h('div', { class: 'page-title' }, h('h1', null, 'Channels')), body));
        list.mount(body);
      },
      refresh: list.refresh
    };
  }

  // ---------------------------------------------------------------- admin
  function adminView() {
    var els = {};
    if (!state.admin) {
      return { tab: 'admin', mount: function (root) {
        root.appendChild(h('div', { class: 'panel notice', 'data-testid': 'admin-refused' }, 'The admin pages need the administrator tag.'));
      }, refresh: function () { return Promise.resolve(); } };
    }
    function tagPicker(input) {
      return h('span', { class: 'tag-picker' }, KNOWN_TAGS.map(function (t) {
        return h('a', { href: '#', class: 'tag-link', onclick: function (ev) {
          ev.preventDefault();
          var cur = normTags(input.value);
          if (cur.indexOf(t) < 0) cur.push(t);
          input.value = cur.join(', ');
        } }, t);
      }));
    }
    function userForm() {
      var name = h('input', { id: 'add-user-name', 'data-testid': 'add-user-name', required: true, autocomplete: 'off' });
      var pw = h('input', { id: 'add-user-password', 'data-testid': 'add-user-password', type: 'password', autocomplete: 'new-password' });
      var tags = h('input', { id: 'add-user-tags', 'data-testid': 'add-user-tags', placeholder: 'comma separated' });
      return h('form', { class: 'form-row', id: 'add-user-form', onsubmit: function (ev) {
        ev.preventDefault();
        if (!name.value) return;
        var body = { tags: normTags(tags.value).join(',') };
        if (pw.value) body.password = pw.value; else body.password_hash = '';
        api('PUT', '/users/' + enc(name.value), body).then(function () {
          ok('User "' + name.value + '" saved.');
          name.value = ''; pw.value = ''; tags.value = '';
          refresh(true);
        }, fail);
      } }, field('Username', name), field('Password', pw), field('Tags', h('span', null, tags, tagPicker(tags))),
        h('button', { type: 'submit', class: 'btn btn-primary', id: 'add-user-submit', 'data-testid': 'add-user-submit' }, 'Add / update user'));
    }
    function setTags(user) {
      var cur = normTags(user.tags).join(', ');
      var t = window.prompt('Tags for user "' + user.name + '" (comma separated; known: ' + KNOWN_TAGS.join(', ') + '):', cur);
      if (t === null) return;
      // Keep the password: send back the stored hash with the new tags.
      api('GET', '/users/' + enc(user.name)).then(function (u) {
        var body = { tags: normTags(t).join(',') };
        body.password_hash = u.password_hash || '';
        if (u.hashing_algorithm) body.hashing_algorithm = u.hashing_algorithm;
        return api('PUT', '/users/' + enc(user.name), body);
      }).then(function () { ok('Tags of "' + user.name + '" set.'); refresh(true); }, fail);
    }
    function vhostForm() {
      var name = h('input', { id: 'add-vhost-name', 'data-testid': 'add-vhost-name', required: true });
      var desc = h('input', { id: 'add-vhost-description' });
      return h('form', { class: 'form-row', id: 'add-vhost-form', onsubmit: function (ev) {
        ev.preventDefault();
        if (!name.value) return;
        var body = desc.value ? { description: desc.value } : {};
        api('PUT', '/vhosts/' + enc(name.value), body).then(function () {
          ok('Virtual host "' + name.value + '" added.');
          name.value = ''; desc.value = '';
          refresh(true);
        }, fail);
      } }, field('Name', name), field('Description', desc),
        h('button', { type: 'submit', class: 'btn btn-primary', id: 'add-vhost-submit', 'data-testid': 'add-vhost-submit' }, 'Add virtual host'));
    }
    function permForm() {
      els.permUser = h('select', { id: 'perm-user', 'data-testid': 'perm-user' });
      els.permVhost = h('select', { id: 'perm-vhost', 'data-testid': 'perm-vhost' });
      var c = h('input', { id: 'perm-configure', value: '.*' });
      var w = h('input', { id: 'perm-write', value: '.*' });
      var r = h('input', { id: 'perm-read', value: '.*' });
      return h('form', { class: 'form-row', id: 'perm-form', onsubmit: function (ev) {
        ev.preventDefault();
        var u = els.permUser.value, v = els.permVhost.value;
        if (!u || !v) return;
        api('PUT', '/permissions/' + enc(v) + '/' + enc(u), { configure: c.value, write: w.value, read: r.value })
          .then(function () { ok('Permissions of "' + u + '" in "' + v + '" set.'); refresh(true); }, fail);
      } }, field('User', els.permUser), field('Virtual host', els.permVhost), field('Configure regexp', c),
        field('Write regexp', w), field('Read regexp', r),
        h('button', { type: 'submit', class: 'btn btn-primary', id: 'perm-submit', 'data-testid': 'perm-submit' }, 'Set permission'));
    }
    function syncSelect(sel, names) {
      var cur = sel.value;
      var key = names.join('\u0000');
      if (sel._key === key) return;
      sel._key = key;
      fill(sel, names.map(function (n) { return h('option', { value: n }, n); }));
      if (names.indexOf(cur) >= 0) sel.value = cur;
    }
    function mount(root) {
      els.users = h('div', { id: 'users-body' });
      els.vhosts = h('div', { id: 'vhosts-body' });
      els.perms = h('div', { id: 'permissions-body' });
      root.appendChild(h('div', { id: 'view-admin', 'data-testid': 'view-admin' },
        h('div', { class: 'page-title' }, h('h1', null, 'Admin')),
        h('div', { class: 'subnav' }, h('a', { href: '#/admin', onclick: jump('admin-users') }, 'Users'),
          h('a', { href: '#/admin', onclick: jump('admin-vhosts') }, 'Virtual hosts'),
          h('a', { href: '#/admin', onclick: jump('admin-permissions') }, 'Permissions')),
        section('Users', 'admin-users', [els.users, h('h3', null, 'Add or update a user'), userForm()]),
        section('Virtual hosts', 'admin-vhosts', [els.vhosts, h('h3', null, 'Add a virtual host'), vhostForm()]),
        section('Permissions', 'admin-permissions', [els.perms, h('h3', null, 'Set a permission'), permForm()])));
    }
    function jump(id) {
      return function (ev) { ev.preventDefault(); var el = $(id); if (el) el.scrollIntoView({ behavior: 'smooth' }); };
    }
    function refreshAdmin() {
      return Promise.all([api('GET', '/users'), api('GET', '/vhosts'), api('GET', '/permissions')]).then(function (res) {
        var users = res[0] || [], vhosts = res[1] || [], perms = res[2] || [];
        renderIfChanged(els.users, users.map(function (u) { return { name: u.name, tags: normTags(u.tags) }; }), function (us) {
          return simpleTable([
            { label: 'Name', render: function (u) { return h('strong', null, u.name); } },
            { label: 'Tags', render: function (u) { return u.tags.length ? u.tags.map(function (t) { return badge(t, t === 'administrator' ? 'info' : 'neutral'); }) : h('span', { class: 'subtle' }, 'none'); } },
            { label: 'Access to virtual hosts', render: function (u) {
              return perms.filter(function (p) { return p.user === u.name; }).map(function (p) { return p.vhost; }).join(', ') || h('span', { class: 'subtle' }, 'none');
            } },
            { label: '', cls: 'actions', render: function (u) {
              return [button('Set tags', { class: 'btn-small', 'data-testid': 'user-set-tags' }, function () { setTags(u); }),
                button('Delete', { class: 'btn-small btn-danger', 'data-testid': 'user-delete' }, function () {
                  var msg = u.name === state.user ? 'Delete user "' + u.name + '"? This is the user you are logged in as.' : 'Delete user "' + u.name + '"?';
                  if (!window.confirm(msg)) return;
                  api('DELETE', '/users/' + enc(u.name)).then(function () { ok('User "' + u.name + '" deleted.'); refresh(true); }, fail);
                })];
            } }
          ], us, { id: 'users-table', rowAttrs: function (u) { return { 'data-testid': 'user-row', 'data-name': u.name }; } });
        });
        renderIfChanged(els.vhosts, vhosts.map(function (v) {
          return { name: v.name, description: v.description, messages: v.messages, messages_ready: v.messages_ready,
            messages_unacknowledged: v.messages_unacknowledged };
        }), function (vs) {
          return simpleTable([
            { label: 'Name', render: function (v) { return h('strong', null, v.name); } },
            { key: 'description', label: 'Description' },
            { label: 'Ready', cls: 'num', render: function (v) { return fmtNum(v.messages_ready); } },
            { label: 'Unacked', cls: 'num', render: function (v) { return fmtNum(v.messages_unacknowledged); } },
            { label: 'Total', cls: 'num', render: function (v) { return fmtNum(v.messages); } },
            { label: '', cls: 'actions', render: function (v) {
              return button('Delete', { class: 'btn-small btn-danger', 'data-testid': 'vhost-delete' }, function () {
                if (!window.confirm('Delete virtual host "' + v.name + '" and everything in it?')) return;
                api('DELETE', '/vhosts/' + enc(v.name)).then(function () { ok('Virtual host "' + v.name + '" deleted.'); refresh(true); }, fail);
              });
            } }
          ], vs, { id: 'vhosts-table', rowAttrs: function (v) { return { 'data-testid': 'vhost-row', 'data-name': v.name }; } });
        });
        renderIfChanged(els.perms, perms, function (ps) {
          return simpleTable([
            { key: 'user', label: 'User' },
            { key: 'vhost', label: 'Virtual host' },
            { label: 'Configure', render: function (p) { return h('code', null, p.configure); } },
            { label: 'Write', render: function (p) { return h('code', null, p.write); } },
            { label: 'Read', render: function (p) { return h('code', null, p.read); } },
            { label: '', cls: 'actions', render: function (p) {
              return button('Clear', { class: 'btn-small btn-danger', 'data-testid': 'permission-clear' }, function () {
                if (!window.confirm('Clear the permissions of "' + p.user + '" in "' + p.vhost + '"?')) return;
                api('DELETE', '/permissions/' + enc(p.vhost) + '/' + enc(p.user)).then(function () { ok('Permissions cleared.'); refresh(true); }, fail);
              });
            } }
          ], ps, { id: 'permissions-table', empty: 'No permissions.', rowAttrs: function (p) {
            return { 'data-testid': 'permission-row', 'data-user': p.user, 'data-vhost': p.vhost };
          } });
        });
        syncSelect(els.permUser, users.map(function (u) { return u.name; }));
        syncSelect(els.permVhost, vhosts.map(function (v) { return v.name; }));
      });
    }
    return { tab: 'admin', mount: mount, refresh: refreshAdmin };
  }

  function notFoundView() {
    return { tab: '', mount: function (root) {
      root.appendChild(h('div', { class: 'panel notice' }, 'No such page. ', h('a', { href: '#/' }, 'Go to the overview')));
    }, refresh: function () { return Promise.resolve(); } };
  }

  // ---------------------------------------------------------------- start
  function start() {
    $('login-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var u = $('login-username').value, p = $('login-password').value;
      fill($('login-error'), '');
      $('login-submit').disabled = true;
      checkLogin(b64(u + ':' + p)).then(function () { $('login-submit').disabled = false; });
    });
    $('logout').addEventListener('click', function () {
      // the next user starts on the overview
      if (location.hash && location.hash !== '#/') history.replaceState(null, '', '#/');
      logout('');
    });
    window.addEventListener('hashchange', route);
    var saved = sessionStorage.getItem(AUTH_KEY);
    if (saved) {
      var u = null;
      try { u = JSON.parse(sessionStorage.getItem(USER_KEY) || 'null'); } catch (e) { u = null; }
      if (u && u.name) $('login-username').value = u.name;
      checkLogin(saved);
    } else {
      showLogin('');
    }
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
