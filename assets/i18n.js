/* Exchange Impact: the page's language on every request it makes (pages/_i18n.py).
 * The server answers a page load in the language of its `lang` URL parameter or of the
 * browser, and writes it into <html lang>. Dash's callback requests carry no URL parameter,
 * so each same-origin request says the page's language in the X-EI-Lang header, and the
 * callbacks answer in the language the page was served in. */
(function () {
  "use strict";
  const original = window.fetch;
  window.fetch = function (input, init) {
    const url = typeof input === "string" ? input : (input && input.url) || "";
    const lang = document.documentElement.lang;
    let sameOrigin = true;
    try {
      sameOrigin = new URL(url, window.location.href).origin === window.location.origin;
    } catch (e) {
      sameOrigin = false;
    }
    if (lang && sameOrigin) {
      init = Object.assign({}, init);
      const headers = new Headers(init.headers || (input instanceof Request ? input.headers : {}));
      headers.set("X-EI-Lang", lang);
      init.headers = headers;
    }
    return original.call(this, input, init);
  };

})();
