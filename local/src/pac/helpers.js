// The functions a PAC file may call, as browsers give them. dnsResolve, dnsResolveEx,
// myIpAddress and myIpAddressEx are supplied by burrow-local (bounded lookups); the rest
// is here. Also loaded by the tests into node, to check burrow-local's own PAC.

function isPlainHostName(host) {
  return String(host).indexOf(".") < 0;
}

function dnsDomainIs(host, domain) {
  host = String(host).toLowerCase();
  domain = String(domain).toLowerCase();
  return host.length >= domain.length &&
    host.substring(host.length - domain.length) === domain;
}

function localHostOrDomainIs(host, hostdom) {
  host = String(host).toLowerCase();
  hostdom = String(hostdom).toLowerCase();
  if (host === hostdom) return true;
  return host.indexOf(".") < 0 && hostdom.split(".")[0] === host;
}

function isResolvable(host) {
  return dnsResolve(host) !== null;
}

function isResolvableEx(host) {
  return dnsResolveEx(host) !== "";
}

function dnsDomainLevels(host) {
  return String(host).split(".").length - 1;
}

function shExpMatch(str, pattern) {
  var re = String(pattern)
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp("^" + re + "$").test(String(str));
}

// A dotted IPv4 address as an unsigned 32-bit number, or null.
function __burrowIpv4(text) {
  var m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(String(text));
  if (!m) return null;
  var n = 0;
  for (var i = 1; i <= 4; i++) {
    var b = Number(m[i]);
    if (b > 255) return null;
    n = n * 256 + b;
  }
  return n;
}

function convert_addr(ipchars) {
  var n = __burrowIpv4(ipchars);
  return n === null ? 0 : n;
}

function isInNet(host, pattern, mask) {
  var ip = __burrowIpv4(host);
  if (ip === null) {
    var resolved = dnsResolve(host);
    if (resolved === null) return false;
    ip = __burrowIpv4(resolved);
    if (ip === null) return false;
  }
  var p = __burrowIpv4(pattern), m = __burrowIpv4(mask);
  if (p === null || m === null) return false;
  return ((ip & m) >>> 0) === ((p & m) >>> 0);
}

var __burrowDays = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
var __burrowMonths = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                      "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

// Arguments without a trailing "GMT", and whether it was there.
function __burrowArgs(args) {
  var a = Array.prototype.slice.call(args);
  var gmt = a.length > 0 && a[a.length - 1] === "GMT";
  if (gmt) a.pop();
  return { a: a, gmt: gmt };
}

// lo <= x <= hi, or, when the range wraps (lo > hi), outside (hi, lo).
function __burrowWithin(x, lo, hi) {
  return lo <= hi ? x >= lo && x <= hi : x >= lo || x <= hi;
}

function weekdayRange() {
  var v = __burrowArgs(arguments);
  var now = new Date();
  var today = v.gmt ? now.getUTCDay() : now.getDay();
  var lo = __burrowDays.indexOf(v.a[0]);
  var hi = v.a.length > 1 ? __burrowDays.indexOf(v.a[1]) : lo;
  if (lo < 0 || hi < 0) return false;
  return __burrowWithin(today, lo, hi);
}

function timeRange() {
  var v = __burrowArgs(arguments), a = v.a.map(Number);
  var now = new Date();
  var h = v.gmt ? now.getUTCHours() : now.getHours();
  var m = v.gmt ? now.getUTCMinutes() : now.getMinutes();
  var s = v.gmt ? now.getUTCSeconds() : now.getSeconds();
  var t = h * 3600 + m * 60 + s;
  switch (a.length) {
    case 1: return h === a[0];
    case 2: return a[0] === a[1] ? h === a[0] : __burrowWithin(h, a[0], (a[1] + 23) % 24);
    case 4: return __burrowWithin(t, a[0] * 3600 + a[1] * 60, a[2] * 3600 + a[3] * 60 - 1);
    case 6: return __burrowWithin(t, a[0] * 3600 + a[1] * 60 + a[2], a[3] * 3600 + a[4] * 60 + a[5]);
    default: return false;
  }
}

// dateRange(day | month | year, …): one value or a range of days (1-31), month names,
// years (four digits), or day month / month year / day month year pairs.
function dateRange() {
  var v = __burrowArgs(arguments), a = v.a;
  var now = new Date();
  var cur = {
    d: v.gmt ? now.getUTCDate() : now.getDate(),
    m: v.gmt ? now.getUTCMonth() : now.getMonth(),
    y: v.gmt ? now.getUTCFullYear() : now.getFullYear()
  };
  var parts = [];
  for (var i = 0; i < a.length; i++) {
    var month = __burrowMonths.indexOf(a[i]);
    if (month >= 0) parts.push({ k: "m", v: month });
    else if (Number(a[i]) > 31) parts.push({ k: "y", v: Number(a[i]) });
    else if (Number(a[i]) >= 1) parts.push({ k: "d", v: Number(a[i]) });
    else return false;
  }
  function key(fields) {
    var f = { d: null, m: null, y: null };
    fields.forEach(function (p) { f[p.k] = p.v; });
    return (f.y === null ? 0 : f.y * 10000) + (f.m === null ? 0 : f.m * 100) + (f.d === null ? 0 : f.d);
  }
  function current(fields) {
    return key(fields.map(function (p) { return { k: p.k, v: cur[p.k] }; }));
  }
  if (parts.length === 1 || parts.length === 3) {
    return key(parts) === current(parts);
  }
  if (parts.length % 2 !== 0 || parts.length > 6) return false;
  var lo = parts.slice(0, parts.length / 2), hi = parts.slice(parts.length / 2);
  var x = current(lo);
  return __burrowWithin(x, key(lo), key(hi));
}

function alert(message) {}
