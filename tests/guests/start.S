/* Entry code for Ferrite's micro-guests.
 *
 * Two ways in, as a real kernel has them:
 *  - PVH (the Xen ELF note below): 32-bit protected mode, paging off, %ebx = hvm_start_info.
 *  - 64-bit entry at the ELF entry point (_start64): long mode set up by the VMM,
 *    %rsi = Linux zero page. Built without the note (-DNO_PVH) so the VMM takes that path.
 * Both end in guest_main(boot_info, is_pvh) on a private stack with 4 GiB identity mapped,
 * so virtio-mmio windows and the local APIC are reachable. */

#define PAGE_FLAGS 0x83 /* present | writable | 2 MiB page */

#ifndef NO_PVH
        .section .note.Xen, "a", @note
        .align 4
        .long 4                 /* name size: "Xen\0" */
        .long 4                 /* descriptor size */
        .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .align 4
        .long _start32
        .align 4
#endif

        .section .text.start, "ax"
        .code32
        .globl _start32
_start32:
        cli
        movl %ebx, %esi                 /* hvm_start_info */
        /* The page tables are built at link time (below, in .data), as Linux's early ones
         * are: a loop here would run with paging off, which a software-assisted hypervisor
         * emulates one instruction at a time. */
        movl %cr4, %eax
        orl $0x20, %eax                 /* PAE */
        movl %eax, %cr4
        movl $pml4, %eax
        movl %eax, %cr3
        movl $0xC0000080, %ecx          /* EFER */
        rdmsr
        orl $0x100, %eax                /* LME */
        wrmsr
        movl %cr0, %eax
        orl $0x80000001, %eax           /* PG | PE */
        movl %eax, %cr0
        lgdt gdt_desc
        ljmp $0x08, $from32

        .code64
from32:
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movq $stack_top, %rsp
        movl %esi, %edi                 /* boot_info = start_info */
        movl $1, %esi                   /* is_pvh */
        call guest_main
        jmp halt

        .globl _start64
_start64:
        cli
        movq %rsi, %r12                 /* zero page */
        /* the VMM maps only the first GiB; switch to our own 4 GiB map */
        movq $pml4, %rax
        movq %rax, %cr3
        lgdt gdt_desc
        movq $stack_top, %rsp
        movq %r12, %rdi                 /* boot_info = zero page */
        xorl %esi, %esi                 /* is_pvh = 0 */
        call guest_main
halt:
        hlt
        jmp halt

/* Application processors start here in real mode after INIT-SIPI: the BSP copies this
 * block to 0x10000 (SIPI vector 0x10, so CS = 0x1000). Each AP takes a spin lock at 0x10ff0
 * so lines from different vCPUs do not interleave, prints its APIC id on COM1, counts
 * itself in at 0x10ff4, releases the lock and halts. Only relative jumps and segment-relative
 * data: the block runs at a different address than it was linked at. */
        .code16
        .globl ap_trampoline, ap_trampoline_end
ap_trampoline:
        cli
        movw %cs, %ax
        movw %ax, %ds
6:      movb $1, %al
        xchgb %al, 0xff0
        testb %al, %al
        jnz 6b
        movl $1, %eax
        cpuid
        shrl $24, %ebx
        movw $0x3f8, %dx
        movb $'c', %al
        outb %al, %dx
        movb $'p', %al
        outb %al, %dx
        movb $'u', %al
        outb %al, %dx
        movb $' ', %al
        outb %al, %dx
        movb %bl, %al
        addb $'0', %al
        outb %al, %dx
        movb $' ', %al
        outb %al, %dx
        movb $'u', %al
        outb %al, %dx
        movb $'p', %al
        outb %al, %dx
        movb $'\n', %al
        outb %al, %dx
        lock incl 0xff4
        movb $0, 0xff0
7:      hlt
        jmp 7b
ap_trampoline_end:
        .code64

        .section .rodata
        .align 16
gdt:
        .quad 0
        .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
        .quad 0x00cf92000000ffff        /* 0x10: data */
gdt_desc:
        .word gdt_desc - gdt - 1
        .quad gdt

/* Identity map of 0..4 GiB with 2 MiB pages: one PML4 entry, four PDPT entries, four page
 * directories of 512 entries each. */
        .section .data
        .align 4096
pml4:   .quad pdpt + 3
        .fill 511, 8, 0
pdpt:   .quad pd + 3
        .quad pd + 0x1000 + 3
        .quad pd + 0x2000 + 3
        .quad pd + 0x3000 + 3
        .fill 508, 8, 0
pd:
        .set page, 0
        .rept 2048
        .quad page + PAGE_FLAGS
        .set page, page + 0x200000
        .endr

        .section .bss
        .align 4096
        .skip 16384
stack_top:
