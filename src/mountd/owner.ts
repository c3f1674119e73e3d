// Telling a live process from an earlier one with the same pid: state files record both.
import fs from 'node:fs';

/** Field 22 of /proc/<pid>/stat (start time in clock ticks); '' when the pid is gone. */
export function startTime(pid: number): string {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

export interface Owner {
  pid: number;
  start: string;
}

export const self = (): Owner => ({ pid: process.pid, start: startTime(process.pid) });

/** Whether the recorded owner is another process that still runs. */
export const otherLiveOwner = (o: Owner | undefined): boolean => !!o && o.pid !== process.pid && startTime(o.pid) === o.start;
