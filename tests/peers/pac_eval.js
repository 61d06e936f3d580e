// Evaluates a PAC file in node (a real JavaScript engine, not burrow's): loads the PAC
// helper functions, then the PAC, and prints "host<TAB>answer" for each host argument.
// dnsResolve answers address literals only, so names are judged by name.
// usage: node pac_eval.js HELPERS.js FILE.pac host...
"use strict";
const fs = require("fs");
const vm = require("vm");
const [helpers, pac, ...hosts] = process.argv.slice(2);
const literal = (h) => /^\d+\.\d+\.\d+\.\d+$/.test(h);
const sandbox = {
  dnsResolve: (h) => (literal(h) ? h : null),
  dnsResolveEx: (h) => (literal(h) ? h : ""),
  myIpAddress: () => "127.0.0.1",
  myIpAddressEx: () => "127.0.0.1",
};
vm.createContext(sandbox);
vm.runInContext(fs.readFileSync(helpers, "utf8"), sandbox);
vm.runInContext(fs.readFileSync(pac, "utf8"), sandbox);
for (const h of hosts) {
  console.log(h + "\t" + sandbox.FindProxyForURL("http://" + h + "/", h));
}
