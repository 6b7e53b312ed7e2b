//  Small DOM helpers shared by the views. User text only ever goes in
//  through textContent (el's string children), never as HTML.

//  el('li', { className: 'x', dataset: { key: 'k' } }, 'text', child)
export function el (tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
        if (value === undefined || value === null || value === false) continue;
        if (key === 'dataset') Object.assign(node.dataset, value);
        else if (key.startsWith('aria-') || key === 'role') node.setAttribute(key, value === true ? 'true' : value);
        else node[key] = value;
    }
    for (const child of children)
        if (child !== null && child !== undefined && child !== false)
            node.append(typeof child === 'string' ? document.createTextNode(child) : child);
    return node;
}

//  Keep parent's children in the order of items, reusing the element of
//  each key (so focus, scroll and selection survive a re-render).
//  create(item) makes a new element; update(node, item) refreshes one.
export function reconcile (parent, items, keyOf, create, update) {
    const existing = new Map();
    for (const node of parent.children) existing.set(node.dataset.key, node);
    let next = parent.firstElementChild;
    for (const item of items) {
        const key = keyOf(item);
        let node = existing.get(key);
        if (node) existing.delete(key);
        else {
            node = create(item);
            node.dataset.key = key;
        }
        update(node, item);
        if (node === next) next = next.nextElementSibling;
        else parent.insertBefore(node, next);
    }
    for (const node of existing.values()) node.remove();
}

//  Local time: "14:05" today, "Mon 14:05" this week, else "3 Mar 14:05"
export function shortTime (iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return '';
    const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    const now = new Date();
    if (date.toDateString() === now.toDateString()) return time;
    const days = (now - date) / 86400000;
    if (days < 6 && days > 0) return `${date.toLocaleDateString([], { weekday: 'short' })} ${time}`;
    const day = date.toLocaleDateString([], { day: 'numeric', month: 'short',
        year: date.getFullYear() === now.getFullYear() ? undefined : 'numeric' });
    return `${day} ${time}`;
}

export function longTime (iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? '' : date.toLocaleString();
}

//  Within a few pixels of the bottom counts as "at the bottom"
export function atBottom (scroller, slack = 40) {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight <= slack;
}

export function show (node, visible) { node.hidden = !visible; }
