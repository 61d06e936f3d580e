// Loads a page in a fresh headless Chromium through a proxy, RUNS times, and prints each
// load's time (navigation start to the load event, every image in): 
// node page.js PROXY_URL PAGE_URL RUNS
'use strict';
const { chromium } = require('playwright-core');

(async () => {
  const [proxy, url, runs] = process.argv.slice(2);
  for (let i = 0; i < Number(runs || 1); i++) {
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
      await page.goto(url, { timeout: 60000, waitUntil: 'load' });
      const ms = await page.evaluate(() => {
        const n = performance.getEntriesByType('navigation')[0];
        return n.loadEventStart - n.startTime;
      });
      const broken = await page.evaluate(() => [...document.images].filter((i) => !i.complete || i.naturalWidth === 0).length);
      console.log(`load_ms ${ms.toFixed(1)} broken ${broken}`);
    } finally {
      await browser.close();
    }
  }
})().catch((e) => { console.error('page: ' + e.message); process.exit(1); });
