#!/usr/bin/env bash
# Runs a command on a host with a given cgroup layout, whatever this
# machine's: a guest booting Debian's kernel whose root is this machine's
# own filesystem (read-only over 9p, with a RAM overlay on top), its
# /sys/fs/cgroup mounted as the v2 unified hierarchy with every controller
# (--layout unified, the default) or as v1 hierarchies beside an empty
# cgroup2 tree (--layout hybrid).
#
#   scripts/cgroup-vm.sh [--layout unified|hybrid] [--cwd DIR] COMMAND [ARG...]
#
# The command runs as root in the guest from DIR (default: the current
# directory); its output is shown and its exit code returned. Nothing the
# guest writes reaches this machine but the command's output. Needs
# qemu-system-x86, kmod, cpio and busybox-static.
set -euo pipefail

cwd="$PWD"
layout=unified
while [ "$#" -gt 1 ]; do
    case "$1" in
    --cwd) cwd="$2" ;;
    --layout) layout="$2" ;;
    *) break ;;
    esac
    shift 2
done
case "$layout" in unified | hybrid) ;; *) echo "$0: layout unified or hybrid" >&2; exit 2 ;; esac
[ "$#" -gt 0 ] || { echo "usage: $0 [--layout unified|hybrid] [--cwd DIR] COMMAND [ARG...]" >&2; exit 2; }

# The kernel is downloaded once (apt's cache) and unpacked under a cache
# directory kept between runs.
cache="${PEAPOD_VM_CACHE:-/var/cache/peapod/vm}"
# Debian's current kernel (what linux-image-amd64 depends on today).
kpkg="${PEAPOD_VM_KERNEL:-$(apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-/ {print $2; exit}')}"
[ -n "$kpkg" ] || { echo "$0: no Debian kernel package found (apt-get update?)" >&2; exit 2; }
kdir="$cache/$kpkg"
if [ ! -e "$kdir/ready" ]; then
    rm -rf "$kdir"
    mkdir -p "$kdir"
    (cd "$kdir" && apt-get download "$kpkg" >/dev/null 2>&1)
    dpkg-deb -x "$kdir"/"$kpkg"_*.deb "$kdir/root"
    rm -f "$kdir"/*.deb
    kver="$(ls "$kdir/root/lib/modules")"
    depmod -b "$kdir/root" "$kver"
    touch "$kdir/ready"
fi
kver="$(ls "$kdir/root/lib/modules")"
modules="$kdir/root/lib/modules/$kver"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The initramfs: busybox and the modules that mount the root, in the
# order of their dependencies.
init="$work/initramfs"
mkdir -p "$init"/{bin,dev,proc,sys,mnt/lower,mnt/rw,mnt/root,modules}
cp /bin/busybox "$init/bin/busybox"
for m in virtio_pci 9pnet_virtio 9p overlay; do
    deps="$(modprobe --show-depends -d "$kdir/root" -S "$kver" "$m")" ||
        { echo "$0: no module $m in $kpkg" >&2; exit 2; }
    for ko in $(echo "$deps" | awk '$1 == "insmod" {print $2}'); do
        name="$(basename "$ko")"
        grep -qx "$name" "$init/modules/order" 2>/dev/null && continue
        cp "$ko" "$init/modules/"
        echo "$name" >>"$init/modules/order"
    done
done

# What the guest runs, handed over through the shared directory.
shared="$work/shared"
mkdir -p "$shared"
{
    echo "cd $(printf '%q' "$cwd")"
    printf 'export PATH=%q HOME=%q\n' "$PATH" "${HOME:-/root}"
    for v in CARGO_TARGET_DIR RUSTUP_HOME CARGO_HOME RUST_BACKTRACE KUBECTL; do
        [ -n "${!v:-}" ] && printf 'export %s=%q\n' "$v" "${!v}"
    done
    printf '%q ' "$@"
    echo
} >"$shared/command"
cp /bin/busybox "$shared/busybox"
cat >"$shared/guest-init" <<'EOF'
ip link set lo up
sh /mnt/command >/dev/ttyS0 2>&1
echo $? >/mnt/exit
sync
/mnt/busybox poweroff -f
EOF

cat >"$init/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod /modules/$m || echo "insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /mnt/lower
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 shared /mnt/rw
mount -t tmpfs -o size=80% tmpfs /mnt/root
mkdir -p /mnt/root/upper /mnt/root/work /mnt/root/merged
mount -t overlay -o lowerdir=/mnt/lower,upperdir=/mnt/root/upper,workdir=/mnt/root/work overlay /mnt/root/merged
r=/mnt/root/merged
mount --move /mnt/rw $r/mnt
mount -t proc proc $r/proc
mount -t sysfs sys $r/sys
mount -t devtmpfs dev $r/dev
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts devpts $r/dev/pts
mount -t tmpfs tmpfs $r/dev/shm
mount -t tmpfs tmpfs $r/run
mount -t tmpfs tmpfs $r/tmp
if [ LAYOUT = unified ]; then
    # The unified hierarchy, every controller there for the children.
    mount -t cgroup2 cgroup2 $r/sys/fs/cgroup
    for c in $(cat $r/sys/fs/cgroup/cgroup.controllers); do
        echo "+$c" >$r/sys/fs/cgroup/cgroup.subtree_control
    done
else
    # A hierarchy per v1 controller, and a cgroup2 tree without any.
    mount -t tmpfs -o mode=755 cgroup $r/sys/fs/cgroup
    for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
        mkdir $r/sys/fs/cgroup/$c
        mount -t cgroup -o $c cgroup $r/sys/fs/cgroup/$c
    done
    mkdir $r/sys/fs/cgroup/unified
    mount -t cgroup2 cgroup2 $r/sys/fs/cgroup/unified
fi
mount -t bpf bpf $r/sys/fs/bpf 2>/dev/null
# The guest kernel's modules, where modprobe looks for them.
mkdir -p $r/lib/modules/KVER
mount --bind $r/MODULES $r/lib/modules/KVER
hostname cgroup-vm
# switch_root, not chroot: the kernel runs modprobe (module autoloading)
# in PID 1's root.
exec switch_root $r /bin/sh /mnt/guest-init
EOF
sed -i -e "s|KVER|$kver|" -e "s|MODULES|$modules|" -e "s|LAYOUT|$layout|" "$init/init"
chmod +x "$init/init"
(cd "$init" && find . | cpio -o -H newc --quiet) >"$work/initrd"

# KVM where it works; software emulation otherwise (nested KVM inside
# some cloud VMs opens but never runs a guest: PEAPOD_VM_ACCEL=tcg).
case "${PEAPOD_VM_ACCEL:-tcg}" in
kvm) accel=(-accel kvm -cpu host) ;;
*) accel=(-accel tcg,thread=multi -cpu max) ;;
esac
qemu-system-x86_64 "${accel[@]}" -smp "$(nproc)" -m "${PEAPOD_VM_MEMORY:-6G}" \
    -kernel "$kdir/root/boot/vmlinuz-$kver" -initrd "$work/initrd" \
    -append "console=ttyS0 ${PEAPOD_VM_QUIET-quiet} panic=-1 init=/init" \
    -nographic -no-reboot -nic none \
    -fsdev local,id=hostroot,path=/,security_model=passthrough,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
    -fsdev local,id=shared,path="$shared",security_model=passthrough \
    -device virtio-9p-pci,fsdev=shared,mount_tag=shared </dev/null

[ -s "$shared/exit" ] || { echo "$0: the guest did not finish the command" >&2; exit 1; }
exit "$(cat "$shared/exit")"
