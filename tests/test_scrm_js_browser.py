"""static/js/scrm.js, in Chromium: the data attributes that replaced the templates' inline handlers (the CSP forbids
those) still do what the handlers did. Real pages for the common cases, a fragment added by the test for the rest."""

import pytest

from customers.tests.factories import CustomerFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FRAGMENT = """() => {
  const box = document.createElement("div");
  box.id = "scrm-js-test";
  box.innerHTML = `
    <form id="confirm-form" action="/customers/" method="get" data-confirm="确定？"><button id="confirm-submit">go</button></form>
    <form id="no-submit-form" action="/customers/" method="get" data-no-submit><button id="no-submit">go</button></form>
    <div class="flow-slot" id="slot"><span>picker</span>
      <button type="button" id="clear" data-clear-closest=".flow-slot">取消</button></div>
    <div data-enter-changes><input id="enter-input"></div>
    <pre id="copy-source">复制这段话</pre>
    <button type="button" id="copy" data-copy="#copy-source" data-copied="已复制">复制</button>`;
  document.querySelector(".page-body .container-xl").prepend(box);
  window.__changes = 0;
  document.getElementById("enter-input").addEventListener("change", () => window.__changes++);
}"""


def test_data_attributes_do_what_the_inline_handlers_did(page, login, advisor):
    for i in range(3):
        CustomerFactory(advisor=advisor, name=f"全选客户{i}")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    login(advisor)

    page.goto("/customers/")
    page.check("[data-testid=select-all]")  # data-check-all
    assert page.locator("#customer-rows input[name=customers]:checked").count() == 3
    page.uncheck("[data-testid=select-all]")
    assert page.locator("#customer-rows input[name=customers]:checked").count() == 0

    page.evaluate(FRAGMENT)
    page.evaluate("window.__sameDocument = true")
    page.once("dialog", lambda dialog: dialog.dismiss())  # data-confirm: cancelled, nothing submitted
    page.click("#confirm-submit")
    page.click("#no-submit")  # data-no-submit
    page.press("#enter-input", "Enter")  # data-enter-changes: a change event, no submission
    page.wait_for_timeout(300)
    assert page.evaluate("window.__sameDocument === true && window.__changes === 1")

    page.click("#clear")  # data-clear-closest
    assert page.locator("#slot").inner_html() == ""
    page.click("#copy")  # data-copy
    page.wait_for_selector("#copy >> text=已复制")
    assert page.evaluate("navigator.clipboard.readText()") == "复制这段话"

    page.once("dialog", lambda dialog: dialog.accept())  # data-confirm: accepted, the form submits
    page.click("#confirm-submit")
    page.wait_for_function("() => window.__sameDocument === undefined")
