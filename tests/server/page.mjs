// page.mjs - the web chat page of `grok serve` in headless Chromium (the
// Debian package, driven by playwright-core): send a message, see the
// streamed answer, keep the history, use the settings and the stop button,
// and take screenshots at a desktop and a phone-sized viewport.
//   node page.mjs URL OUT_DIR [CHROMIUM]
import { chromium } from "playwright-core";

const [base, outDir, exe = "/usr/bin/chromium"] = process.argv.slice(2);
let failures = 0;
const check = (cond, what, extra) => { if (!cond) { failures++; console.log(`FAIL ${what}`, extra ?? ""); } };

const browser = await chromium.launch({
  executablePath: exe,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"],
});
try {
  for (const vp of [{ name: "desktop", width: 1280, height: 800 }, { name: "phone", width: 390, height: 844, mobile: true }]) {
    const ctx = await browser.newContext({ viewport: { width: vp.width, height: vp.height }, isMobile: !!vp.mobile,
      hasTouch: !!vp.mobile, deviceScaleFactor: vp.mobile ? 2 : 1 });
    const page = await ctx.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    const outside = [];
    page.on("request", (r) => { if (!r.url().startsWith(base)) outside.push(r.url()); });
    await page.goto(base + "/", { waitUntil: "load" });
    await page.waitForFunction(() => !/connecting/.test(document.getElementById("model").textContent), null, { timeout: 10_000 });
    const model = await page.textContent("#model");
    check(/grok|gguf|random/i.test(model) && !/cannot/.test(model), `${vp.name}: model shown`, model);

    // settings: a system prompt, a fixed temperature and a small max tokens
    await page.click("#settings-btn");
    await page.fill("#s-system", "You are a helpful assistant.");
    await page.fill("#s-temp", "0.7");
    await page.fill("#s-max", "48");
    await page.click("#s-save");
    await page.waitForFunction(() => !document.getElementById("settings").open);

    // first message
    await page.fill("#input", "Hello! Please tell me a short story about a fox.");
    await page.keyboard.press("Enter");
    await page.waitForSelector(".msg.user .bubble");
    await page.waitForFunction(() => document.querySelectorAll(".msg.assistant .bubble .meta").length === 1, null, { timeout: 30_000 });
    const answer = await page.$eval(".msg.assistant .bubble", (e) => e.textContent);
    check(answer.length > 0, `${vp.name}: an answer appeared`, answer);
    const meta = await page.$eval(".msg.assistant .meta", (e) => e.textContent);
    check(/\d+ tokens/.test(meta), `${vp.name}: token count shown`, meta);
    check(await page.textContent("#send") === "Send", `${vp.name}: button back to Send`);

    // a second turn goes into the same conversation
    await page.fill("#input", "And then?");
    await page.click("#send");
    await page.waitForFunction(() => document.querySelectorAll(".msg.assistant .bubble .meta").length === 2, null, { timeout: 30_000 });
    check(await page.locator(".msg.user").count() === 2, `${vp.name}: two user messages`);
    check(await page.locator("#convs li").count() >= 1, `${vp.name}: conversation in the history`);

    // stop button: a long answer, stopped right after it starts
    await page.click("#settings-btn");
    await page.fill("#s-max", "480");
    await page.click("#s-save");
    await page.fill("#input", "Write a very long story.");
    await page.click("#send");
    let stopped = false;
    try {
      await page.waitForFunction(() => document.getElementById("send").textContent === "Stop", null, { timeout: 2000 });
      await page.click("#send", { timeout: 1000 });
      stopped = true;
    } catch { /* it may already have finished: the model is tiny */ }
    await page.waitForFunction(() => document.getElementById("send").textContent === "Send", null, { timeout: 30_000 });
    check(await page.locator(".msg.assistant").count() === 3, `${vp.name}: third answer (stopped: ${stopped})`);
    check(await page.locator(".msg.error").count() === 0, `${vp.name}: no error bubble`,
      await page.locator(".msg.error").allTextContents());

    await page.screenshot({ path: `${outDir}/page-${vp.name}.png`, fullPage: false });
    if (vp.mobile) {
      await page.click("#menu");
      await page.waitForTimeout(300);
      await page.screenshot({ path: `${outDir}/page-${vp.name}-history.png` });
      await page.click("#messages", { position: { x: vp.width - 10, y: 200 } });
      await page.waitForTimeout(300);
      await page.click("#settings-btn");
      await page.screenshot({ path: `${outDir}/page-${vp.name}-settings.png` });
      await page.keyboard.press("Escape");
    }
    // reload: the conversation comes back from localStorage
    await page.reload({ waitUntil: "load" });
    await page.waitForSelector(".msg.assistant");
    check(await page.locator(".msg.user").count() === 3, `${vp.name}: history survives a reload`);
    check(errors.length === 0, `${vp.name}: no page errors`, errors);
    check(outside.length === 0, `${vp.name}: nothing fetched from elsewhere`, outside);
    await ctx.close();
  }
} catch (e) {
  failures++;
  console.log("FAIL unexpected exception:", e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
console.log(`page: ${failures} failures; screenshots in ${outDir}`);
process.exit(failures ? 1 : 0);
