#!/bin/sh
# Run a command with a kmemlab snapshot mounted over the real files:
#
#   kmemlab snapshot /tmp/snap --script examples/slab.kmem
#   unshare -rm sh examples/snapshot-mount.sh /tmp/snap slabtop -o
#
# `unshare -rm` gives the command its own user and mount namespaces, so the bind mounts
# below need no root and vanish when it exits. Each file the snapshot has is mounted over
# the host's file of the same path (only where the host has one: procfs has no new names);
# /sys/kernel/slab is replaced as a whole (where the host has it: a kernel with SLUB).
# Everything else under /proc and /sys (/proc/stat, /proc/self, ...) stays the host's.
set -eu
if [ $# -lt 2 ]; then
    echo "usage: unshare -rm sh $0 SNAPSHOT-DIR COMMAND [ARG...]" >&2
    exit 2
fi
snap=$1
shift
if [ ! -f "$snap/proc/slabinfo" ]; then
    echo "$0: $snap is not a kmemlab snapshot (no proc/slabinfo)" >&2
    exit 2
fi
mount_file() {
    if [ -e "$2" ]; then
        mount --bind "$1" "$2"
    fi
}
for f in "$snap"/proc/* "$snap"/proc/sys/vm/* "$snap"/proc/sys/kernel/*; do
    if [ -f "$f" ]; then
        mount_file "$f" "/${f#"$snap"/}"
    fi
done
mount_file "$snap/sys/kernel/mm/transparent_hugepage/enabled" \
    /sys/kernel/mm/transparent_hugepage/enabled
if [ -d /sys/kernel/slab ]; then
    mount --bind "$snap/sys/kernel/slab" /sys/kernel/slab
else
    echo "$0: no /sys/kernel/slab here to mount the slab tree over; /proc only" >&2
fi
exec "$@"
