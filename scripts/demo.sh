#!/usr/bin/env bash
# The main job on the embedded default, a local vault: back up a sample VM (libvirt XML plus two
# disks holding real ext4 and FAT filesystems) and a folder of files, change both, back up
# again, restore the first points (the VM as a new VM, the files to another folder) and show
# that the restores match what the sources were at that time.  Last, a vault server on loopback:
# the folder backed up through it with a backup token and restored with a restore token.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

work=${DEMO_DIR:-$(mktemp -d /tmp/strongroom-demo.XXXXXX)}
mkdir -p "$work"
export STRONGROOM_VAULT=$work/vault STRONGROOM_PASSWORD=demo-passphrase XDG_CACHE_HOME=$work/cache
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
first_point() { strongroom points --kind "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])'; }

step "create an encrypted vault in $work/vault"
strongroom init

step "a sample VM and a folder of files"
python scripts/demo_vm.py create "$work/vm" --name demo-vm
mkdir -p "$work/files/docs" "$work/files/photos"
for i in $(seq 1 20); do seq "$i" 5000 > "$work/files/docs/report-$i.txt"; done
head -c 3000000 /dev/urandom > "$work/files/photos/holiday.jpg"
ln -s docs/report-1.txt "$work/files/latest-report"
ls -l "$work/vm"

step "back up the VM (offline, every disk plus its XML) and the files"
strongroom backup vm --xml "$work/vm/demo-vm.xml"
strongroom backup files "$work/files" --source demo-files --tag demo
mkdir -p "$work/at-first-point"
cp --sparse=always "$work/vm/"*.qcow2 "$work/vm/"*.img "$work/at-first-point/"
cp -a "$work/files" "$work/at-first-point/files"

step "change them: files inside both VM disks, and the folder (one edit, one delete, one new)"
python scripts/demo_vm.py change "$work/vm"
echo "a late addition" >> "$work/files/docs/report-3.txt"
rm "$work/files/docs/report-7.txt"
echo "new" > "$work/files/docs/notes.txt"

step "back up again: only what changed is stored"
strongroom backup vm --xml "$work/vm/demo-vm.xml"
strongroom backup files "$work/files" --source demo-files --tag demo
strongroom points
strongroom diff latest --source demo-files

step "restore the first points: the VM as a new VM, the files to another folder"
mkdir -p "$work/restored-vm"
strongroom restore vm "$(first_point vm)" --as-new demo-vm-copy --disk-dir "$work/restored-vm" --verify
strongroom restore files "$(first_point files)" --target "$work/restored-files" --verify
ls -l "$work/restored-vm"

step "show the result: the restores equal the sources as they were at the first backup"
qemu-img compare "$work/restored-vm/demo-vm-copy-vda.qcow2" "$work/at-first-point/demo-vm-vda.qcow2"
qemu-img compare "$work/restored-vm/demo-vm-copy-vdb.img" "$work/at-first-point/demo-vm-vdb.img"
diff -r "$work/at-first-point/files" "$work/restored-files$work/files" && echo "files: identical"
grep -c . "$work/restored-files$work/files/docs/report-7.txt" >/dev/null && echo "report-7.txt (deleted later) is back"
strongroom stats
strongroom check --read-data

bash scripts/demo_server.sh "$work" "$work/files"   # the same folder through a vault server
echo
echo "everything is in $work"
