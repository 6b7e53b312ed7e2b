//  What the benchmark reads of the server processes: CPU seconds and peak
//  resident memory from /proc, for one process and everything below it
//  (RabbitMQ is beam.smp plus its helpers).
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';

const TICKS = 100;          //  USER_HZ on Linux

function stat (pid) {
    try {
        const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
        return { ppid: Number(fields[1]), cpu: (Number(fields[11]) + Number(fields[12])) / TICKS };
    } catch {
        return null;        //  gone
    }
}

//  pid and every process below it
export function tree (pid) {
    const children = new Map();
    for (const name of readdirSync('/proc')) {
        if (!/^\d+$/.test(name)) continue;
        const found = stat(name);
        if (found) children.set(Number(name), found.ppid);
    }
    const all = [pid];
    for (let at = 0; at < all.length; at++)
        for (const [child, parent] of children) if (parent === all[at]) all.push(child);
    return all;
}

//  CPU seconds (user + system) used so far by these processes
export function cpuSeconds (pids) {
    return pids.reduce((sum, pid) => sum + (stat(pid)?.cpu ?? 0), 0);
}

//  A memory field of /proc/PID/status (VmHWM, VmRSS) in KiB, summed over
//  the processes
function statusKiB (pids, field) {
    const pattern = new RegExp(`${field}:\\s+(\\d+)`);
    let sum = 0;
    for (const pid of pids) {
        try {
            sum += Number(pattern.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
        } catch { /* gone */ }
    }
    return sum;
}

//  Peak resident memory in KiB, summed over the processes
export const peakKiB = (pids) => statusKiB(pids, 'VmHWM');

//  Resident memory now in KiB, summed over the processes
export const rssKiB = (pids) => statusKiB(pids, 'VmRSS');

//  Anonymous resident memory in KiB (heap, stacks, mappings of no file):
//  what sessions cost, without the pages of shared code a first client
//  brings in
export const anonKiB = (pids) => statusKiB(pids, 'RssAnon');

//  Start the peak anew (clear_refs 5), so a run's peak is its own
export function resetPeak (pids) {
    for (const pid of pids) {
        try { writeFileSync(`/proc/${pid}/clear_refs`, '5'); } catch { /* not ours, or gone */ }
    }
}

//  A group of named processes measured over one run
export class Meter {
    constructor (groups) {           //  name -> [pid...]
        this.groups = groups;
        resetPeak(Object.values(groups).flat());
        this.before = Object.fromEntries(Object.entries(groups).map(([name, pids]) => [name, cpuSeconds(pids)]));
    }

    //  name -> { cpu_s, peak_kib }
    read () {
        return Object.fromEntries(Object.entries(this.groups).map(([name, pids]) =>
            [name, { cpu_s: cpuSeconds(pids) - this.before[name], peak_kib: peakKiB(pids) }]));
    }
}
