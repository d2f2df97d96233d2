// DOM helpers: elements are built from text, never from HTML strings.
export const $ = (sel) => document.querySelector(sel);
export const el = (tag, attrs = {}, ...children) => {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') n.className = v;
    else if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat())
    if (c !== null && c !== undefined) n.append(c instanceof Node ? c : String(c));
  return n;
};
export const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
