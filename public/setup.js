// First run: the built-in loopback self-test, and what to set up next (each protocol's examples).
import { state } from './api.js';
import { $, el } from './dom.js';
import { protocols } from './registry.js';

export function renderSelfTest() {
  const box = $('#selftest');
  box.hidden = !state.status.self_test;
  if (!state.status.self_test || box.childElementCount) return;
  const copy = (text, btn) => {
    const done = () => {
      btn.textContent = 'Copied';
      setTimeout(() => {
        btn.textContent = 'Copy';
      }, 1500);
    };
    // The Clipboard API needs a secure context; plain-HTTP pages fall back to selecting the text.
    if (navigator.clipboard && window.isSecureContext)
      navigator.clipboard.writeText(text).then(done, () => {});
    else {
      const pre = btn.parentElement.querySelector('pre');
      const r = document.createRange();
      r.selectNodeContents(pre);
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(r);
      btn.textContent = 'Selected: press Ctrl+C';
    }
  };
  box.replaceChildren(
    el('h2', {}, "Loopback self-test: shows this machine's speed, not your line"),
    el(
      'p',
      {},
      'No targets are set, so the probe measures its own built-in RMBT servers on this machine. ',
      state.status.self_test_published
        ? 'Its results are published to Home Assistant (service.publish_self_test is on).'
        : 'Its results are not sent to Home Assistant. ',
      "To measure your line, add a target in the add-on's Configuration tab (YAML mode) and restart it:",
    ),
    el(
      'ul',
      { class: 'steps' },
      protocols
        .flatMap((p) => p.setup || [])
        .map((n) => {
          const btn = el('button', { type: 'button', class: 'ghost copy' }, 'Copy');
          btn.addEventListener('click', () => copy(n.snippet, btn));
          return el(
            'li',
            {},
            el(
              'div',
              { class: 'step-head' },
              el('b', {}, n.title),
              n.terms
                ? el(
                    'a',
                    { href: n.terms, target: '_blank', rel: 'noopener noreferrer' },
                    n.termsLabel || 'terms of use',
                  )
                : null,
              btn,
            ),
            el('pre', {}, n.snippet),
          );
        }),
    ),
    el(
      'p',
      { class: 'meta' },
      "Read an operator's terms before you schedule runs against it; the documentation lists the other public deployments and every target option.",
    ),
  );
}
