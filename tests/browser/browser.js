// Loads a page in headless Chromium through a proxy and prints the text of #out once the
// page's WebSocket exchange is done: node browser.js PROXY_URL PAGE_URL
'use strict';
const { chromium } = require('playwright-core');

(async () => {
  const [proxy, url] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--proxy-server=${proxy}`, '--proxy-bypass-list=<-loopback>',
    ],
  });
  try {
    const page = await browser.newPage();
    await page.goto(url, { timeout: 60000 });
    await page.waitForFunction(() => document.getElementById('out').textContent !== 'waiting', null, { timeout: 60000 });
    console.log('result: ' + await page.textContent('#out'));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error('browser: ' + e.message); process.exit(1); });
