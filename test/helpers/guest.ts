// A tiny VM guest for the kvm tests and bench: the installed Debian cloud kernel plus a busybox
// initramfs whose /init loads the virtio modules, DHCPs on eth0 when it has one, writes a marker
// to /dev/vda when it has one, then powers off (g8mode=poweroff) or prints a tick and its block
// devices every second (g8mode=stay). Packed as flists with the project's `g8os flist create`.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { g8os } from './cli';

const KVER = fs.existsSync('/lib/modules') ? fs.readdirSync('/lib/modules').filter((d) => d.includes('cloud')).sort().pop() : undefined;
export const KERNEL = KVER ? `/boot/vmlinuz-${KVER}` : '';
/** modules in load order (dependencies first) */
const MODULES = [
  'drivers/virtio/virtio_ring.ko', 'drivers/virtio/virtio.ko', 'drivers/virtio/virtio_pci_legacy_dev.ko',
  'drivers/virtio/virtio_pci_modern_dev.ko', 'drivers/virtio/virtio_pci.ko', 'drivers/block/virtio_blk.ko',
  'net/core/failover.ko', 'drivers/net/net_failover.ko', 'drivers/net/virtio_net.ko',
];
export const MARKER = 'g8-vdisk-written';

const INIT = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /usr/bin /usr/sbin /sbin /usr/share/udhcpc
/bin/busybox --install -s
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in ${MODULES.map((m) => path.basename(m)).join(' ')}; do insmod /lib/modules/$m || echo "G8MODFAIL $m"; done
echo G8GUEST-UP
mode=$(sed -n 's/.*g8mode=\\([a-z]*\\).*/\\1/p' /proc/cmdline)
sleep 1
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  udhcpc -i eth0 -n -q -t 10 -T 1 -s /usr/share/udhcpc/default.script >/dev/null 2>&1
  echo "G8DHCP $(ip -4 -o addr show dev eth0 | sed -n 's/.*inet \\([0-9.]*\\).*/\\1/p')"
fi
if [ -b /dev/vda ]; then echo ${MARKER} | dd of=/dev/vda conv=fsync 2>/dev/null && sync && echo G8WROTE; fi
if [ "$mode" = poweroff ]; then echo G8POWEROFF; poweroff -f; fi
n=0
while true; do n=$((n+1)); echo "G8TICK $n disks: $(ls /sys/block | grep vd | tr '\\n' ' ')"; sleep 1; done
`;

const DHCP_SCRIPT = `#!/bin/sh
[ "$1" = bound ] || [ "$1" = renew ] || exit 0
ip addr add $ip/\${mask:-16} dev $interface
[ -n "$router" ] && ip route add default via $router
exit 0
`;

export interface GuestFlists {
  dir: string;
  store: string;
  /** boots, does its work, powers off */
  poweroff: string;
  /** boots and ticks forever */
  stay: string;
  /** no kernel inside */
  nokernel: string;
  kernel: string;
  initrd: string;
}

/** Builds the initramfs and the flists under `dir` (dir:// store). */
export async function buildGuest(dir: string): Promise<GuestFlists> {
  if (!KVER || !fs.existsSync(KERNEL)) throw new Error('no cloud kernel under /boot and /lib/modules (linux-image-cloud-amd64)');
  const root = path.join(dir, 'initramfs');
  for (const d of ['bin', 'lib/modules', 'usr/share/udhcpc', 'proc', 'sys', 'dev', 'tmp']) fs.mkdirSync(path.join(root, d), { recursive: true });
  fs.copyFileSync('/bin/busybox', path.join(root, 'bin/busybox'));
  fs.chmodSync(path.join(root, 'bin/busybox'), 0o755);
  fs.symlinkSync('busybox', path.join(root, 'bin/sh'));
  for (const m of MODULES) fs.copyFileSync(`/lib/modules/${KVER}/kernel/${m}`, path.join(root, 'lib/modules', path.basename(m)));
  fs.writeFileSync(path.join(root, 'init'), INIT, { mode: 0o755 });
  fs.writeFileSync(path.join(root, 'usr/share/udhcpc/default.script'), DHCP_SCRIPT, { mode: 0o755 });
  const initrd = path.join(dir, 'initrd.img');
  execFileSync('sh', ['-c', `cd "${root}" && find . | cpio -o -H newc --quiet | gzip -1 > "${initrd}"`]);
  const store = `dir://${path.join(dir, 'store')}`;
  const make = async (name: string, files: Record<string, string | Buffer>): Promise<string> => {
    const tree = path.join(dir, `tree-${name}`);
    fs.mkdirSync(path.join(tree, 'boot'), { recursive: true });
    for (const [f, c] of Object.entries(files)) fs.writeFileSync(path.join(tree, f), c);
    const out = path.join(dir, `${name}.flist`);
    const r = await g8os(['flist', 'create', tree, '-o', out, '--store', store]);
    if (r.code !== 0) throw new Error(`flist create ${name}: ${r.stderr}`);
    return out;
  };
  const kernel = fs.readFileSync(KERNEL);
  const img = fs.readFileSync(initrd);
  const cmd = (mode: string): string => `console=ttyS0 quiet loglevel=1 panic=-1 g8mode=${mode}\n`;
  return {
    dir,
    store,
    kernel: KERNEL,
    initrd,
    poweroff: await make('poweroff', { 'boot/vmlinuz': kernel, 'boot/initrd.img': img, 'boot/cmdline': cmd('poweroff') }),
    stay: await make('stay', { 'boot/vmlinuz': kernel, 'boot/initrd.img': img, 'boot/cmdline': cmd('stay') }),
    nokernel: await make('nokernel', { 'boot/initrd.img': img, 'boot/cmdline': cmd('stay') }),
  };
}
