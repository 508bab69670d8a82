/* Ferrite micro-guests: tiny freestanding x86_64 programs that exercise the VMM's boot
 * paths and devices through the same interfaces a Linux guest uses (COM1, the local APIC's
 * INIT-SIPI, virtio-mmio, the ACPI sleep control port, the i8042 reset line).
 *
 * The program to run comes from the kernel command line ("test=hello", ...), read from the
 * PVH start_info or the Linux zero page, so one image serves every test. Everything polls:
 * interrupts stay disabled. Keep loops short: on software-assisted nested KVM guest code
 * runs at emulation speed. */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

#define COM1 0x3f8
#define SLEEP_CONTROL_PORT 0x600
#define SLEEP_S5 ((5 << 2) | (1 << 5))
#define VIRTIO_MMIO_BASE 0xd0000000UL
#define VIRTIO_MMIO_SLOTS 16

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 mmio_r32(u64 a) { return *(volatile u32 *)a; }
static inline void mmio_w32(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline void barrier(void) { __asm__ volatile("mfence" ::: "memory"); }

void *memset(void *d, int c, u64 n) { u8 *p = d; while (n--) *p++ = (u8)c; return d; }
void *memcpy(void *d, const void *s, u64 n) { u8 *p = d; const u8 *q = s; while (n--) *p++ = *q++; return d; }

static void putc(char c) { outb(COM1, (u8)c); }
static void puts(const char *s) { while (*s) putc(*s++); }
static void put_u64(u64 v) {
    char b[21]; int i = 20; b[i] = 0;
    do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    puts(&b[i]);
}
static void put_hex8(u8 v) { const char *h = "0123456789abcdef"; putc(h[v >> 4]); putc(h[v & 15]); }
static void delay(u64 n) { for (volatile u64 i = 0; i < n; i++) { } }

static void poweroff(void) {
    outb(SLEEP_CONTROL_PORT, SLEEP_S5);
    /* QEMU's isa-debug-exit (the benchmark baseline); an unclaimed port elsewhere. */
    outb(0xf4, 0);
    for (;;) __asm__ volatile("hlt");
}

/* ---- command line ---- */
static const char *cmdline = "";
static const char *arg(const char *key) {
    const char *p = cmdline;
    while (*p) {
        while (*p == ' ') p++;
        const char *k = key, *q = p;
        while (*k && *q == *k) { k++; q++; }
        if (!*k && *q == '=') return q + 1;
        while (*p && *p != ' ') p++;
    }
    return 0;
}
static int arg_is(const char *key, const char *val) {
    const char *v = arg(key);
    if (!v) return 0;
    while (*val && *v == *val) { v++; val++; }
    return !*val && (*v == 0 || *v == ' ');
}
static u64 arg_u64(const char *key, u64 dflt) {
    const char *v = arg(key); u64 n = 0;
    if (!v || *v < '0' || *v > '9') return dflt;
    while (*v >= '0' && *v <= '9') n = n * 10 + (u64)(*v++ - '0');
    return n;
}
static void arg_ip(const char *key, u8 out[4], const u8 dflt[4]) {
    const char *v = arg(key);
    memcpy(out, dflt, 4);
    if (!v) return;
    for (int i = 0; i < 4; i++) {
        u32 n = 0;
        while (*v >= '0' && *v <= '9') n = n * 10 + (u32)(*v++ - '0');
        out[i] = (u8)n;
        if (*v == '.') v++;
    }
}

/* ---- virtio-mmio (version 2) with one polled split queue per direction ---- */
#define R_MAGIC 0x000
#define R_VERSION 0x004
#define R_DEVICE_ID 0x008
#define R_DEV_FEATURES 0x010
#define R_DEV_FEATURES_SEL 0x014
#define R_DRV_FEATURES 0x020
#define R_DRV_FEATURES_SEL 0x024
#define R_QUEUE_SEL 0x030
#define R_QUEUE_NUM_MAX 0x034
#define R_QUEUE_NUM 0x038
#define R_QUEUE_READY 0x044
#define R_QUEUE_NOTIFY 0x050
#define R_INTERRUPT_ACK 0x064
#define R_STATUS 0x070
#define R_QUEUE_DESC 0x080
#define R_QUEUE_AVAIL 0x090
#define R_QUEUE_USED 0x0a0
#define R_CONFIG 0x100

#define QSZ 8
struct desc { u64 addr; u32 len; u16 flags; u16 next; };
struct vq {
    struct desc desc[QSZ] __attribute__((aligned(16)));
    struct { u16 flags, idx, ring[QSZ], used_event; } avail __attribute__((aligned(2)));
    struct { u16 flags, idx; struct { u32 id, len; } ring[QSZ]; u16 avail_event; } used __attribute__((aligned(4)));
    u16 last_used;
    u16 free_head;
};

static u64 find_device(u32 id, int nth) {
    for (int i = 0; i < VIRTIO_MMIO_SLOTS; i++) {
        u64 b = VIRTIO_MMIO_BASE + (u64)i * 0x1000;
        if (mmio_r32(b + R_MAGIC) != 0x74726976 || mmio_r32(b + R_DEVICE_ID) != id) continue;
        if (nth-- == 0) return b;
    }
    return 0;
}

/* Negotiates VIRTIO_F_VERSION_1 plus `want` (bits 0..31) and returns 0 on success. */
static int device_init(u64 b, u32 want) {
    if (mmio_r32(b + R_VERSION) != 2) return -1;
    mmio_w32(b + R_STATUS, 0);
    mmio_w32(b + R_STATUS, 1);
    mmio_w32(b + R_STATUS, 1 | 2);
    mmio_w32(b + R_DEV_FEATURES_SEL, 0);
    u32 lo = mmio_r32(b + R_DEV_FEATURES);
    mmio_w32(b + R_DRV_FEATURES_SEL, 0);
    mmio_w32(b + R_DRV_FEATURES, lo & want);
    mmio_w32(b + R_DRV_FEATURES_SEL, 1);
    mmio_w32(b + R_DRV_FEATURES, 1); /* VERSION_1 */
    mmio_w32(b + R_STATUS, 1 | 2 | 8);
    return (mmio_r32(b + R_STATUS) & 8) ? 0 : -1;
}

static void queue_init(u64 b, u32 idx, struct vq *q) {
    memset(q, 0, sizeof(*q));
    mmio_w32(b + R_QUEUE_SEL, idx);
    mmio_w32(b + R_QUEUE_NUM, QSZ);
    mmio_w32(b + R_QUEUE_DESC, (u32)(u64)q->desc);
    mmio_w32(b + R_QUEUE_DESC + 4, 0);
    mmio_w32(b + R_QUEUE_AVAIL, (u32)(u64)&q->avail);
    mmio_w32(b + R_QUEUE_AVAIL + 4, 0);
    mmio_w32(b + R_QUEUE_USED, (u32)(u64)&q->used);
    mmio_w32(b + R_QUEUE_USED + 4, 0);
    mmio_w32(b + R_QUEUE_READY, 1);
}

static void device_ready(u64 b) { mmio_w32(b + R_STATUS, 1 | 2 | 8 | 4); }

/* Offers a chain of `n` buffers starting at descriptor `head` (descriptors already filled). */
static void offer(u64 b, u32 qidx, struct vq *q, u16 head) {
    q->avail.ring[q->avail.idx % QSZ] = head;
    barrier();
    q->avail.idx++;
    barrier();
    mmio_w32(b + R_QUEUE_NOTIFY, qidx);
}

/* Waits for the next used element; returns its length or -1 after `spins` polls. */
static long wait_used(u64 b, struct vq *q, u64 spins, u32 *id) {
    for (u64 i = 0; i < spins; i++) {
        barrier();
        if (*(volatile u16 *)&q->used.idx != q->last_used) {
            u32 slot = q->last_used % QSZ;
            if (id) *id = q->used.ring[slot].id;
            long len = q->used.ring[slot].len;
            q->last_used++;
            mmio_w32(b + R_INTERRUPT_ACK, 1);
            return len;
        }
    }
    return -1;
}

/* ---- tests ---- */
static void test_smp(void) {
    extern char ap_trampoline[], ap_trampoline_end[];
    u64 want = arg_u64("cpus", 1);
    memcpy((void *)0x10000, ap_trampoline, (u64)(ap_trampoline_end - ap_trampoline));
    *(volatile u32 *)0x10ff0 = 0;
    *(volatile u32 *)0x10ff4 = 0;
    puts("cpu 0 up\n");
    volatile u32 *icr_lo = (u32 *)0xfee00300, *icr_hi = (u32 *)0xfee00310;
    *icr_hi = 0;
    *icr_lo = 0x000C4500; /* INIT, all excluding self */
    delay(1000);
    *icr_lo = 0x000C4610; /* STARTUP, vector 0x10 */
    delay(1000);
    *icr_lo = 0x000C4610;
    for (u64 i = 0; i < 2000000 && *(volatile u32 *)0x10ff4 < want - 1; i++) { }
    while (*(volatile u8 *)0x10ff0) { }
    puts("cpus up: ");
    put_u64(1 + *(volatile u32 *)0x10ff4);
    puts("\n");
    poweroff();
}

static struct vq blkq;
static u8 blk_hdr[16] __attribute__((aligned(16)));
static u8 blk_data[512] __attribute__((aligned(16)));
static u8 blk_status;

static int blk_request(u64 b, u32 type, u64 sector, int with_data, int device_writes) {
    *(u32 *)&blk_hdr[0] = type;
    *(u32 *)&blk_hdr[4] = 0;
    *(u64 *)&blk_hdr[8] = sector;
    blk_status = 0xff;
    blkq.desc[0] = (struct desc){(u64)blk_hdr, 16, 1, 1};
    if (with_data) {
        blkq.desc[1] = (struct desc){(u64)blk_data, 512, (u16)(1 | (device_writes ? 2 : 0)), 2};
        blkq.desc[2] = (struct desc){(u64)&blk_status, 1, 2, 0};
    } else {
        blkq.desc[0].next = 2;
        blkq.desc[2] = (struct desc){(u64)&blk_status, 1, 2, 0};
    }
    offer(b, 0, &blkq, 0);
    if (wait_used(b, &blkq, 10000000, 0) < 0) return -1;
    return blk_status;
}

static void test_blk(void) {
    for (int n = 0; n < 4; n++) {
        u64 b = find_device(2, n);
        if (!b) break;
        if (device_init(b, 0) != 0) { puts("blk init failed\n"); poweroff(); }
        queue_init(b, 0, &blkq);
        device_ready(b);
        u64 cap = *(volatile u64 *)(b + R_CONFIG);
        puts("blk"); put_u64((u64)n); puts(" capacity "); put_u64(cap); puts("\n");
        int st = blk_request(b, 0, 0, 1, 1);
        puts("blk"); put_u64((u64)n); puts(" read status "); put_u64((u64)st); puts(": ");
        for (int i = 0; i < 64 && blk_data[i] && blk_data[i] != '\n'; i++) putc((char)blk_data[i]);
        puts("\n");
        memset(blk_data, 0, 512);
        const char *msg = "written by the guest through virtio-blk";
        memcpy(blk_data, msg, 40);
        st = blk_request(b, 1, 1, 1, 0);
        puts("blk"); put_u64((u64)n); puts(" write status "); put_u64((u64)st); puts("\n");
        st = blk_request(b, 4, 0, 0, 0);
        puts("blk"); put_u64((u64)n); puts(" flush status "); put_u64((u64)st); puts("\n");
    }
    puts("blk done\n");
    poweroff();
}

static struct vq rxq, txq;
static u8 rxbuf[QSZ][1536] __attribute__((aligned(16)));
static u8 txbuf[12 + 42] __attribute__((aligned(16)));

/* With "hold=1" the guest waits for a key on COM1 (or the ACPI power button) before powering
 * off, so a test can look at the running machine (its tap on the bridge) without racing the
 * guest, and can shut it down gracefully. */
static void hold_then_poweroff(void) {
    if (arg_is("hold", "1")) {
        puts("holding\n");
        for (;;) {
            if (inb(COM1 + 5) & 1) break;
            /* What an ACPI OS's _EVT does on the GED interrupt: read the event register
             * (ferrite-vmm's GED, 0xfebff000); bit 0 is the power button. */
            if (*(volatile u8 *)0xfebff000ull & 1) { puts("power button\n"); break; }
            delay(20000);
        }
    }
    poweroff();
}

static void test_net(void) {
    u64 b = find_device(1, 0);
    if (!b || device_init(b, 1u << 5 /* MAC */) != 0) { puts("net init failed\n"); poweroff(); }
    queue_init(b, 0, &rxq);
    queue_init(b, 1, &txq);
    device_ready(b);
    u8 mac[6];
    for (int i = 0; i < 6; i++) mac[i] = *(volatile u8 *)(b + R_CONFIG + (u64)i);
    puts("net mac ");
    for (int i = 0; i < 6; i++) { put_hex8(mac[i]); if (i < 5) putc(':'); }
    puts("\n");
    for (u16 i = 0; i < QSZ; i++) {
        rxq.desc[i] = (struct desc){(u64)rxbuf[i], 1536, 2, 0};
        rxq.avail.ring[i] = i;
    }
    barrier();
    rxq.avail.idx = QSZ;
    barrier();
    mmio_w32(b + R_QUEUE_NOTIFY, 0);
    static const u8 dip[4] = {10, 77, 0, 2}, dpeer[4] = {10, 77, 0, 1};
    u8 ip[4], peer[4];
    arg_ip("ip", ip, dip);
    arg_ip("peer", peer, dpeer);
    u8 *f = txbuf + 12; /* virtio_net_hdr_v1 is 12 bytes, all zero: no offloads */
    memset(txbuf, 0, sizeof(txbuf));
    memset(f, 0xff, 6);
    memcpy(f + 6, mac, 6);
    f[12] = 0x08; f[13] = 0x06;                   /* ARP */
    f[14] = 0; f[15] = 1; f[16] = 0x08; f[17] = 0; /* Ethernet, IPv4 */
    f[18] = 6; f[19] = 4; f[20] = 0; f[21] = 1;    /* request */
    memcpy(f + 22, mac, 6); memcpy(f + 28, ip, 4);
    memset(f + 32, 0, 6); memcpy(f + 38, peer, 4);
    for (int attempt = 0; attempt < 20; attempt++) {
        txq.desc[0] = (struct desc){(u64)txbuf, sizeof(txbuf), 0, 0};
        offer(b, 1, &txq, 0);
        wait_used(b, &txq, 1000000, 0);
        puts("net sent arp request\n");
        u32 id;
        for (int k = 0; k < 8; k++) {
            long len = wait_used(b, &rxq, 200000, &id);
            if (len < 0) break;
            u8 *r = rxbuf[id % QSZ] + 12;
            int is_reply = len >= 12 + 42 && r[12] == 0x08 && r[13] == 0x06 && r[21] == 2 &&
                           r[28] == peer[0] && r[29] == peer[1] && r[30] == peer[2] && r[31] == peer[3];
            /* give the buffer back */
            rxq.avail.ring[rxq.avail.idx % QSZ] = (u16)id;
            barrier();
            rxq.avail.idx++;
            mmio_w32(b + R_QUEUE_NOTIFY, 0);
            if (is_reply) {
                puts("net arp reply from ");
                for (int i = 0; i < 6; i++) { put_hex8(r[22 + i]); if (i < 5) putc(':'); }
                puts("\n");
                hold_then_poweroff();
            }
        }
    }
    puts("net no reply\n");
    hold_then_poweroff();
}

static struct vq rngq;
static u8 rngbuf[16];
static void test_rng(void) {
    u64 b = find_device(4, 0);
    if (!b || device_init(b, 0) != 0) { puts("rng init failed\n"); poweroff(); }
    queue_init(b, 0, &rngq);
    device_ready(b);
    rngq.desc[0] = (struct desc){(u64)rngbuf, 16, 2, 0};
    offer(b, 0, &rngq, 0);
    long len = wait_used(b, &rngq, 10000000, 0);
    puts("rng ");
    put_u64((u64)len);
    puts(" bytes ");
    for (int i = 0; i < 16; i++) put_hex8(rngbuf[i]);
    puts("\n");
    poweroff();
}

static void test_count(void) {
    u64 step = arg_u64("delay", 200000);
    for (u64 n = 1;; n++) {
        puts("count ");
        put_u64(n);
        puts("\n");
        delay(step);
    }
}

/* ---- serial input: echo each line typed into COM1 (the console test); "bye" powers off,
 * "reset" resets ---- */
static void test_echo(void) {
    char line[128];
    int n = 0;
    puts("echo ready\n");
    for (;;) {
        if (!(inb(COM1 + 5) & 1)) { delay(20000); continue; } /* LSR: data ready */
        char ch = (char)inb(COM1);
        if (ch == '\r' || ch == '\n') {
            line[n] = 0;
            puts("echo: "); puts(line); puts("\n");
            if (n == 3 && line[0] == 'b' && line[1] == 'y' && line[2] == 'e') poweroff();
            if (n == 5 && line[0] == 'r' && line[1] == 'e' && line[2] == 's' && line[3] == 'e' && line[4] == 't') {
                puts("resetting\n");
                outb(0x64, 0xfe); /* the i8042 reset line, as a panicking kernel with panic=1 */
                for (;;) __asm__ volatile("hlt");
            }
            n = 0;
        } else if (n < (int)sizeof(line) - 1) {
            line[n++] = ch;
        }
    }
}

/* ---- ACPI: walk the tables a stock kernel would, and report what they declare ---- */
static int sum_ok(const u8 *p, u32 n) { u8 s = 0; for (u32 i = 0; i < n; i++) s += p[i]; return s == 0; }
static int sig_is(const u8 *p, const char *s, int n) { for (int i = 0; i < n; i++) if (p[i] != (u8)s[i]) return 0; return 1; }
static void acpi_fail(const char *why) { puts("acpi FAILED: "); puts(why); puts("\n"); poweroff(); }

static void test_acpi(u64 rsdp) {
    const u8 *r = (const u8 *)rsdp;
    if (!rsdp || !sig_is(r, "RSD PTR ", 8)) acpi_fail("no RSDP where the boot structure points");
    if (!sum_ok(r, 20) || !sum_ok(r, *(const u32 *)(r + 20))) acpi_fail("RSDP checksum");
    const u8 *x = (const u8 *)*(const u64 *)(r + 24);
    if (!sig_is(x, "XSDT", 4) || !sum_ok(x, *(const u32 *)(x + 4))) acpi_fail("XSDT");
    u32 n = (*(const u32 *)(x + 4) - 36) / 8;
    u64 cpus = 0, ioapics = 0, virtio = 0, s5 = 0, ged = 0, pwrb = 0, hw_reduced = 0, sleep_port = 0;
    for (u32 i = 0; i < n; i++) {
        const u8 *t = (const u8 *)*(const u64 *)(x + 36 + 8 * i);
        u32 len = *(const u32 *)(t + 4);
        if (!sum_ok(t, len)) acpi_fail("table checksum");
        if (sig_is(t, "APIC", 4)) {
            for (u32 o = 44; o + 2 <= len && t[o + 1]; o += t[o + 1]) {
                if (t[o] == 0 && (t[o + 4] & 1)) cpus++;
                if (t[o] == 1) ioapics++;
            }
        }
        if (sig_is(t, "FACP", 4)) {
            hw_reduced = (*(const u32 *)(t + 112) >> 20) & 1;
            sleep_port = *(const u64 *)(t + 244 + 4);
            const u8 *d = (const u8 *)*(const u64 *)(t + 140);
            u32 dl = *(const u32 *)(d + 4);
            if (!sig_is(d, "DSDT", 4) || !sum_ok(d, dl)) acpi_fail("DSDT");
            for (u32 o = 36; o + 8 <= dl; o++) {
                if (sig_is(d + o, "LNRO0005", 8)) virtio++;
                if (sig_is(d + o, "ACPI0013", 8)) ged++;
                if (sig_is(d + o, "_S5_", 4)) s5++;
                if (sig_is(d + o, "PWRB", 4)) pwrb++;
            }
        }
    }
    puts("acpi ok cpus="); put_u64(cpus);
    puts(" ioapics="); put_u64(ioapics);
    puts(" virtio="); put_u64(virtio);
    puts(" ged="); put_u64(ged);
    puts(" pwrb="); put_u64(pwrb ? 1 : 0);
    puts(" s5="); put_u64(s5);
    puts(" hw_reduced="); put_u64(hw_reduced);
    puts(" sleep_port="); put_u64(sleep_port);
    puts("\n");
    poweroff();
}

/* "test=touch mib=N": writes one byte in every 4 KiB page of N MiB from 16 MiB up (RAM the
 * guest image does not use), so the host can see how its memory was backed, then holds. */
static void test_touch(void) {
    u64 mib = arg_u64("mib", 16);
    volatile u8 *p = (volatile u8 *)(16ull << 20);
    for (u64 o = 0; o < (mib << 20); o += 4096) p[o] = 1;
    puts("touched "); put_u64(mib); puts(" MiB\n");
    hold_then_poweroff();
}

void guest_main(u64 boot_info, int is_pvh) {
    u64 cl = is_pvh ? *(u64 *)(boot_info + 24) : *(u32 *)(boot_info + 0x228);
    if (cl) cmdline = (const char *)cl;
    if (arg_is("test", "acpi")) test_acpi(is_pvh ? *(u64 *)(boot_info + 32) : *(u64 *)(boot_info + 0x70));
    if (arg_is("test", "echo")) test_echo();
    if (arg_is("test", "smp")) test_smp();
    if (arg_is("test", "blk")) test_blk();
    if (arg_is("test", "net")) test_net();
    if (arg_is("test", "rng")) test_rng();
    if (arg_is("test", "count")) test_count();
    if (arg_is("test", "touch")) test_touch();
    if (arg_is("test", "reset")) { puts("resetting\n"); outb(0x64, 0xfe); for (;;) __asm__ volatile("hlt"); }
    if (arg_is("test", "hang")) { puts("hanging\n"); for (;;) __asm__ volatile("hlt"); }
    puts(is_pvh ? "Hello from a Ferrite micro-guest (PVH entry)\n" : "Hello from a Ferrite micro-guest (64-bit entry)\n");
    poweroff();
}
