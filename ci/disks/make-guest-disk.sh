#!/bin/bash
# Writes the guests' disk, gzipped, to $1 (default: guest.img.gz beside this
# script), with the real tools: sfdisk, mkfs.ext4 and lvm2. `cargo xtask
# guest-disk` runs it (it installs the packages); the scenarios use the
# committed result. Needs root and loop devices; no udev, no device-mapper.
#
#   guest.img  96 MiB, GPT (fixed GUIDs):
#     "data"  8 MiB  ext4 (made with -d) holding hello-b.txt
#     "pv"    rest   LVM2 PV (fixed UUID), VG vg0 with 1 MiB extents:
#                    LV web    10 MiB in TWO segments (5 made, filler made,
#                              5 more), ext4 (made with -d) holding hello-a.txt
#                    LV filler  1 MiB between web's segments, no filesystem
#                    LV bench  72 MiB, no filesystem (room for a dd benchmark)
#
# The LVs cannot be activated here, so web's filesystem is made in a file
# and written where lvm2 itself says web's extents are (lvs --segments).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/guest.img.gz}
work=$(mktemp -d)
loop=
cleanup() {
	if [ -n "$loop" ]; then losetup -d "$loop" || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

# Fixed times and UUIDs wherever the tools take them.
export SOURCE_DATE_EPOCH=1780000000
export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH
export LVM_SUPPRESS_FD_WARNINGS=1
C='global/activation=0 activation/udev_sync=0 activation/udev_rules=0 devices/obtain_device_list_from_udev=0'
lvmq() { "$@" --config "$C" 2> >(grep -v -e 'leaked on lvm' -e 'Activation disabled' >&2); }

# mkext4 DIR SIZE_MIB UUID OUT: an ext4 image holding DIR's files.
mkext4() {
	find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	truncate -s "$2M" "$4"
	mkfs.ext4 -q -F -U "$3" -E "hash_seed=$3,root_owner=0:0" -L "$(basename "$1")" -d "$1" "$4"
	# -d copies ctime, which touch cannot set: pin it, and the root's.
	local cmds=$work/sif
	: >"$cmds"
	for f in / $(cd "$1" && ls); do
		for field in atime mtime ctime crtime; do
			echo "sif /$f $field @$SOURCE_DATE_EPOCH" >>"$cmds"
		done
	done
	debugfs -w -f "$cmds" "$4" >/dev/null 2>&1
	e2fsck -fn "$4" >/dev/null
}

img=$work/guest.img
truncate -s 96M "$img"
sfdisk -q "$img" <<'EOF'
label: gpt
label-id: 7E55E8A0-0000-4000-8000-000000000001
start=2048, size=8MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=7E55E8A0-0000-4000-8000-0000000000DA, name=data
type=E6D6D379-F507-44C2-A23C-238F2A3DF928, uuid=7E55E8A0-0000-4000-8000-0000000000F0, name=pv
EOF
# part_field N FIELD: start or size (sectors) of partition N.
part_field() { sfdisk -d "$img" | awk -v n="$img$1" -v f="$2" '$1 == n { for (i = 2; i <= NF; i++) if ($i == f "=") { gsub(",", "", $(i + 1)); print $(i + 1) } }'; }

# --- data: a plain ext4 partition ---
mkdir "$work/data"
echo "hello from the data partition" >"$work/data/hello-b.txt"
mkext4 "$work/data" 8 7e55e8a0-0000-4000-8000-0000000000db "$work/data.ext4"
dd if="$work/data.ext4" of="$img" bs=1M seek=$(($(part_field 1 start) / 2048)) conv=notrunc status=none

# --- pv: VG vg0, LVs web (two segments), filler, bench ---
loop=$(losetup -P -f --show "$img")
[ -e "${loop}p2" ] || partx -a "$loop"
pv=${loop}p2
# The hostname goes into lvm2's metadata (creation_host): a fixed one.
unshare -u bash -c '
	set -euo pipefail
	hostname tessera-ci
	C=$1 pv=$2
	lvmq() { "$@" --config "$C" 2> >(grep -v -e "leaked on lvm" -e "Activation disabled" >&2); }
	lvmq pvcreate -q --norestorefile -u 7e55e8-a000-4000-8000-0000-0000-0000f1 "$pv"
	lvmq vgcreate -q -s 1m vg0 "$pv"
	lvmq lvcreate -q -Zn -Wn -n web -l 5 vg0
	lvmq lvcreate -q -Zn -Wn -n filler -l 1 vg0
	lvmq lvextend -q -l +5 vg0/web
	lvmq lvcreate -q -Zn -Wn -n bench -L 72m vg0
' - "$C" "$pv" >/dev/null
ext=$(lvmq vgs --noheadings --nosuffix --units s -o vg_extent_size vg0 | tr -d ' ')
ext=${ext%.*}
pe_start=$(lvmq pvs --noheadings --nosuffix --units s -o pe_start "$pv" | tr -d ' ')
pe_start=${pe_start%.*}
base=$(($(part_field 2 start) + pe_start))
lvmq lvs --noheadings --segments -o lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges vg0 >"$work/segs"
web_mib=$(lvmq lvs --noheadings --nosuffix --units m -o lv_size vg0/web | tr -d ' ')
web_mib=${web_mib%.*}
losetup -d "$loop"
loop=

mkdir "$work/web"
echo "hello from the LV web" >"$work/web/hello-a.txt"
mkext4 "$work/web" "$web_mib" 7e55e8a0-0000-4000-8000-0000000000eb "$work/web.ext4"
# Each line: lv start_extent extent_count pv:first-last
while read -r lv start count range; do
	[ "$lv" = web ] || continue
	first=${range#*:}
	first=${first%-*}
	dd if="$work/web.ext4" of="$img" bs=$((ext * 512)) skip="$start" count="$count" \
		seek=$(((base + first * ext) * 512)) oflag=seek_bytes conv=notrunc status=none
done <"$work/segs"
cat "$work/segs" >&2

gzip -9n <"$img" >"$out"
ls -l "$out" >&2
