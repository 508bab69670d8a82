#!/bin/sh
# Builds the micro-guests with the system gcc: guest.elf (PVH note), guest64.elf (no
# note: the VMM boots it through the 64-bit zero-page path). Usage: build.sh OUTDIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-.}
mkdir -p "$out"
CFLAGS="-O2 -ffreestanding -fno-pic -fno-pie -fno-stack-protector -mno-red-zone -mgeneral-regs-only
 -fno-asynchronous-unwind-tables -fno-builtin -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-n -Wl,--no-warn-rwx-segments -Wl,-z,noexecstack"
gcc $CFLAGS -T "$here/guest.ld" -o "$out/guest.elf" "$here/start.S" "$here/guest.c"
gcc $CFLAGS -DNO_PVH -T "$here/guest.ld" -o "$out/guest64.elf" "$here/start.S" "$here/guest.c"
# 32-bit ELF copies, as some toolchains emit: guest32.elf keeps the PVH note (bootable),
# guest32-nopvh.elf has none (a 32-bit image has no other entry, so the VMM refuses it).
objcopy -O elf32-i386 "$out/guest.elf" "$out/guest32.elf"
objcopy -O elf32-i386 "$out/guest64.elf" "$out/guest32-nopvh.elf"
