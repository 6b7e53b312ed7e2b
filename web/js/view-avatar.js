//  A round badge with a person's or room's initials, its colour steady
//  for the same seed (a hash of the id) so rooms are told apart at a glance.

function hue (seed) {
    let hash = 0;
    for (const char of String(seed)) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
    return hash % 360;
}

function initials (name) {
    const words = String(name).trim().split(/\s+/).filter(Boolean);
    const letters = words.length > 1 ? [words[0], words[words.length - 1]] : [words[0] ?? '?'];
    return letters.map((word) => [...word][0]).join('').toUpperCase();
}

export function avatar (node, name, seed = name) {
    const text = initials(name);
    if (node.textContent !== text) node.textContent = text;
    node.style.setProperty('--hue', hue(seed));
}
