#!/bin/bash
# Regenerates the gzipped disk images under fixtures/ that tests/fixtures.rs
# reads. Not run by the tests. Needs root, loop devices, sfdisk (util-linux),
# lvm2 (`apt-get install lvm2`; no device-mapper needed) and python3.
#
#   mbr.img  4 MiB, MBR: p1 512 KiB type 83, p2 1 MiB type 0c, p3 rest type 83
#   gpt.img  4 MiB, GPT: "boot" 512 KiB, "rootfs" 1 MiB, "données" rest
#   lvm.img  8 MiB, GPT: "esp" 512 KiB, "pv" rest with type LVM; a PV with a
#            small metadata ring (lvm2 wants at least 32 KiB; 60 KiB given), VG vg0 with
#            64 KiB extents, LV db (one segment) and LV web (two segments:
#            made, then db made, then web extended), then single commits
#            (tag add/remove) until the committed copy wraps around the ring.
#
# Every 4 KiB block of each partition and LV starts with "<TAG>-<block>"
# (block number relative to the volume, 4 digits), e.g. "LV-web-0013".
# LV data is placed where lvm2 itself reports the extents (lvs --segments,
# pvs pe_start), not where our parser thinks they are.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/fixtures
work=$(mktemp -d)
loop=
cleanup() {
	if [ -n "$loop" ]; then losetup -d "$loop" || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$out"
# No udev and no device-mapper here: lvm2 only writes metadata.
export LVM_SUPPRESS_FD_WARNINGS=1
C='global/activation=0 activation/udev_sync=0 activation/udev_rules=0 devices/obtain_device_list_from_udev=0'
lvmq() { "$@" --config "$C" 2> >(grep -v -e 'leaked on lvm' -e 'Activation disabled' >&2); }

# mark IMAGE BYTE_OFFSET BYTES TAG FIRST_BLOCK
mark() {
	python3 - "$@" <<'EOF'
import sys
img, off, size, tag, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
with open(img, 'r+b') as f:
    for i in range(size // 4096):
        f.seek(off + i * 4096)
        f.write(b'%s-%04d' % (tag.encode(), first + i))
EOF
}
# part_start IMAGE N -> start sector of partition N
part_start() { sfdisk -J "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['partitiontable']['partitions'][$2-1]['start'])"; }
part_size() { sfdisk -J "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['partitiontable']['partitions'][$2-1]['size'])"; }
mark_parts() { # IMAGE PREFIX COUNT
	for n in $(seq 1 "$3"); do
		mark "$1" $(($(part_start "$1" "$n") * 512)) $(($(part_size "$1" "$n") * 512)) "$2$n" 0
	done
}

# --- MBR ---
img=$work/mbr.img
truncate -s 4M "$img"
sfdisk -q "$img" <<'EOF'
label: dos
start=2048, size=1024, type=83
size=2048, type=c
type=83
EOF
mark_parts "$img" MBR-P 3

# --- GPT with names ---
img=$work/gpt.img
truncate -s 4M "$img"
sfdisk -q "$img" <<'EOF'
label: gpt
size=512KiB, type=L, name=boot
size=1MiB, type=L, name=rootfs
type=L, name=données
EOF
mark_parts "$img" GPT-P 3

# --- GPT with an LVM PV ---
img=$work/lvm.img
truncate -s 8M "$img"
sfdisk -q "$img" <<'EOF'
label: gpt
size=512KiB, type=U, name=esp
type=E6D6D379-F507-44C2-A23C-238F2A3DF928, name=pv
EOF
mark "$img" $(($(part_start "$img" 1) * 512)) $(($(part_size "$img" 1) * 512)) ESP 0
loop=$(losetup -P -f --show "$img")
[ -e "${loop}p2" ] || partx -a "$loop"
pv=${loop}p2
# A small ring so that a few dozen commits wrap it.
lvmq pvcreate -q --dataalignment 64k --metadatasize 32k "$pv"
lvmq vgcreate -q -s 64k vg0 "$pv"
lvmq lvcreate -q -Zn -Wn -n web -l 8 vg0
lvmq lvcreate -q -Zn -Wn -n db -l 6 vg0
lvmq lvextend -q -l +4 vg0/web
# Move the ring: create, rename, remove a scratch LV a few times.
for i in 1 2 3; do
	lvmq lvcreate -q -Zn -Wn -n scratch -l 1 vg0
	lvmq lvrename -q vg0 scratch scratch2
	lvmq lvremove -q -f vg0/scratch2
done
# Then single commits until the committed copy wraps past the area's end.
wrapped=no
for i in $(seq 1 200); do
	if [ $((i % 2)) = 1 ]; then t=--addtag; else t=--deltag; fi
	lvmq vgchange -q $t churn vg0 >/dev/null
	if pvck --dump headers "$pv" 2>/dev/null | python3 -c '
import sys, re
d = dict(re.findall(r"mda_header_1\.(\S+) (\S+)", sys.stdin.read()))
sys.exit(0 if int(d["raw_locn[0].offset"]) + int(d["raw_locn[0].size"]) > int(d["size"]) else 1)'; then
		wrapped="yes, after $i tag commits"
		break
	fi
done
echo "lvm.img: committed metadata copy wrapped: $wrapped"
ext=$(lvmq vgs --noheadings --nosuffix --units s -o vg_extent_size vg0 | tr -d ' ')
ext=${ext%.*}
pe_start=$(lvmq pvs --noheadings --nosuffix --units s -o pe_start "$pv" | tr -d ' ')
pe_start=${pe_start%.*}
base=$(($(part_start "$img" 2) + pe_start))
# Each line: lv start_extent extent_count pv:first-last
lvmq lvs --noheadings --segments -o lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges vg0 >"$work/segs"
cat "$work/segs"
pvck --dump headers "$pv" 2>/dev/null | grep -e raw_locn.0 -e 'mda_header_1.size'
losetup -d "$loop"
loop=
while read -r lv start count range; do
	first=${range#*:}
	first=${first%-*}
	mark "$img" $(((base + first * ext) * 512)) $((count * ext * 512)) "LV-$lv" $((start * ext / 8))
done <"$work/segs"

for f in mbr gpt lvm; do
	gzip -9n <"$work/$f.img" >"$out/$f.img.gz"
done
ls -l "$out"
