//! A running machine: the KVM VM, guest memory, devices and one thread per vCPU, with
//! pause/resume (signal kicks out of KVM_RUN) and the state capture snapshots need.

use std::os::unix::thread::JoinHandleExt;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vmm_sys_util::eventfd::EventFd;

use super::acpi;
use super::boot::{self, BootMode};
use super::config::MachineConfig;
use super::cpu;
use super::devices::legacy::{Ged, SleepControl};
use super::devices::serial::{SerialDevice, SerialOut};
use super::devices::virtio::{
    self, blk::Block, mmio::MmioTransport, net::Net, rng::Rng, Interrupt,
};
use super::devices::{Devices, EventFdTrigger, ResetTrigger, VmEvent};
use super::error::{Result, VmmError};
use super::layout;
use super::memory::{self, GuestMem};
use super::snapshot::MachineState;

/// What the machine should be doing; vCPU and device threads follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Run,
    Pause,
    Stop,
}

struct Ctl {
    want: Want,
    /// Threads currently parked because `want` is not `Run`.
    parked: usize,
}

struct RunControl {
    ctl: Mutex<Ctl>,
    cv: Condvar,
}

impl RunControl {
    fn lock(&self) -> MutexGuard<'_, Ctl> {
        self.ctl.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Parks the calling thread while the machine is paused; false when it must stop.
    fn park_if_needed(&self) -> bool {
        let mut c = self.lock();
        if c.want == Want::Run {
            return true;
        }
        c.parked += 1;
        self.cv.notify_all();
        while c.want == Want::Pause {
            c = self.cv.wait(c).unwrap_or_else(|p| p.into_inner());
        }
        c.parked -= 1;
        c.want != Want::Stop
    }
}

/// A machine's vCPUs, each shared by its thread and the control socket.
type Vcpus = Vec<Arc<Mutex<VcpuFd>>>;

/// Where serial output goes.
pub struct SerialSetup {
    pub stdout: bool,
    pub log: Option<(PathBuf, u64)>,
}

pub struct Machine {
    pub config: MachineConfig,
    kvm: Kvm,
    vm: VmFd,
    pub mem: GuestMem,
    vcpus: Vec<Arc<Mutex<VcpuFd>>>,
    pub devices: Arc<Devices>,
    run: Arc<RunControl>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    pollers: usize,
    events_tx: Sender<VmEvent>,
    events_rx: Mutex<Option<Receiver<VmEvent>>>,
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Machine {
    /// Builds a machine from its configuration, booting fresh or from a snapshot's state
    /// (whose memory `restore_mem` already holds).
    pub fn build(
        config: MachineConfig,
        serial: SerialSetup,
        restore: Option<(&MachineState, GuestMem)>,
    ) -> Result<Machine> {
        config.validate()?;
        let kvm = Kvm::new().map_err(|e| VmmError::KvmUnavailable(format!("/dev/kvm: {e}")))?;
        let vm = kvm.create_vm().map_err(VmmError::kvm("KVM_CREATE_VM"))?;
        vm.set_tss_address(layout::KVM_TSS as usize)
            .map_err(VmmError::kvm("KVM_SET_TSS_ADDR"))?;
        vm.create_irq_chip()
            .map_err(VmmError::kvm("KVM_CREATE_IRQCHIP"))?;
        // No in-kernel PIT: the ACPI tables declare a hardware-reduced machine, so Linux takes
        // its clocks from kvmclock and the local APIC (as on Cloud Hypervisor) and never
        // programs a PIT; and tearing down KVM's PIT (its timer thread) added up to 15 ms to
        // every VM's exit on nested KVM.

        let mem = match restore {
            Some((_, ref m)) => m.clone(),
            None => {
                if let Some(avail) = memory::host_available_bytes() {
                    if config.memory_mib << 20 > avail {
                        return Err(VmmError::Config(format!(
                            "memory {} MiB is more than the host has available ({} MiB)",
                            config.memory_mib,
                            avail >> 20
                        )));
                    }
                }
                memory::create(config.memory_mib, config.hugepages)?
            }
        };
        let (events_tx, events_rx) = channel();
        if restore.is_none() {
            // Registering guest RAM is one ioctl that takes 4-7 ms on nested KVM whatever the
            // size; nothing below needs it until the first KVM_RUN (the guest image and tables
            // are written through our own mapping), so it runs beside the rest of the setup.
            let (devices, vcpus) = std::thread::scope(|s| -> Result<_> {
                let slot = s.spawn(|| memory::register(&vm, &mem));
                let built = Self::prepare_boot(&kvm, &vm, &mem, &config, serial, &events_tx);
                let registered = slot.join().unwrap_or_else(|_| {
                    Err(VmmError::Config("registering guest memory panicked".into()))
                });
                let built = built?;
                registered?;
                Ok(built)
            })?;
            return Ok(Self::assemble(
                config, kvm, vm, mem, vcpus, devices, events_tx, events_rx,
            ));
        }
        memory::register(&vm, &mem)?;
        let devices = Arc::new(build_devices(&vm, &mem, &config, serial, &events_tx)?);
        let (state, _) = restore.ok_or_else(|| VmmError::State("no state".into()))?;
        let mut vcpus = Vec::new();
        for (i, vs) in state.vcpus.iter().enumerate() {
            let fd = vm
                .create_vcpu(i as u64)
                .map_err(VmmError::kvm("KVM_CREATE_VCPU"))?;
            cpu::setup_cpuid(&kvm, &fd, i as u8, config.vcpus)?;
            super::snapshot::restore_vcpu(&fd, vs)?;
            vcpus.push(Arc::new(Mutex::new(fd)));
        }
        super::snapshot::restore_vm(&vm, state)?;
        super::snapshot::restore_devices(&devices, state)?;
        Ok(Self::assemble(
            config, kvm, vm, mem, vcpus, devices, events_tx, events_rx,
        ))
    }

    /// A fresh machine's devices and vCPUs, with the guest image, boot structures and ACPI
    /// tables written into its memory.
    fn prepare_boot(
        kvm: &Kvm,
        vm: &VmFd,
        mem: &GuestMem,
        config: &MachineConfig,
        serial: SerialSetup,
        events_tx: &Sender<VmEvent>,
    ) -> Result<(Arc<Devices>, Vcpus)> {
        let devices = Arc::new(build_devices(vm, mem, config, serial, events_tx)?);
        let (entry, kernel) = boot::load_kernel(mem, &config.kernel)?;
        let initrd = match &config.initrd {
            Some(p) => Some(boot::load_initrd(mem, p, boot::initrd_limit(&kernel))?),
            None => None,
        };
        let cmdline = full_cmdline(config);
        boot::load_cmdline(mem, &cmdline)?;
        match entry.mode {
            BootMode::Pvh => boot::write_pvh_info(mem, initrd)?,
            BootMode::Linux64 => boot::write_zero_page(mem, &kernel, cmdline.len(), initrd)?,
        }
        let mmio: Vec<acpi::MmioDevice> = (0..devices.virtio.len())
            .map(|i| acpi::MmioDevice {
                base: layout::mmio_slot(i),
                gsi: layout::VIRTIO_GSI_BASE + i as u32,
            })
            .collect();
        acpi::write_tables(mem, config.vcpus, &mmio)?;
        let mut vcpus = Vec::new();
        for i in 0..config.vcpus {
            let fd = vm
                .create_vcpu(u64::from(i))
                .map_err(VmmError::kvm("KVM_CREATE_VCPU"))?;
            cpu::setup_cpuid(kvm, &fd, i, config.vcpus)?;
            cpu::setup_msrs(&fd)?;
            cpu::setup_lapic(&fd)?;
            if i == 0 {
                cpu::setup_regs(&fd, entry)?;
                cpu::setup_sregs(mem, &fd, entry.mode)?;
                cpu::setup_fpu(&fd)?;
            }
            vcpus.push(Arc::new(Mutex::new(fd)));
        }
        Ok((devices, vcpus))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        config: MachineConfig,
        kvm: Kvm,
        vm: VmFd,
        mem: GuestMem,
        vcpus: Vec<Arc<Mutex<VcpuFd>>>,
        devices: Arc<Devices>,
        events_tx: Sender<VmEvent>,
        events_rx: Receiver<VmEvent>,
    ) -> Machine {
        let pollers = devices
            .virtio
            .iter()
            .filter(|t| lock(t).device.event_fd().is_some())
            .count();
        Machine {
            config,
            kvm,
            vm,
            mem,
            vcpus,
            devices,
            run: Arc::new(RunControl {
                ctl: Mutex::new(Ctl {
                    want: Want::Run,
                    parked: 0,
                }),
                cv: Condvar::new(),
            }),
            threads: Mutex::new(Vec::new()),
            pollers,
            events_tx,
            events_rx: Mutex::new(Some(events_rx)),
        }
    }

    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    pub fn vm_fd(&self) -> &VmFd {
        &self.vm
    }

    /// The channel on which the machine reports power-off, reset and crashes; taken once.
    pub fn take_events(&self) -> Option<Receiver<VmEvent>> {
        lock(&self.events_rx).take()
    }

    pub fn event_sender(&self) -> Sender<VmEvent> {
        self.events_tx.clone()
    }

    /// Makes the vCPUs park before running guest code when they start. Called before the
    /// control socket is served, so a `resume` that arrives before `start` is not undone by it.
    pub fn hold_paused(&self) {
        lock(&self.run.ctl).want = Want::Pause;
    }

    /// Starts vCPU and device threads; when held paused (and not resumed since), waits until
    /// they have parked.
    pub fn start(&self) -> Result<()> {
        vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler)
            .map_err(|e| VmmError::State(format!("kick signal handler: {e}")))?;
        let mut threads = lock(&self.threads);
        for (i, fd) in self.vcpus.iter().enumerate() {
            let fd = fd.clone();
            let devices = self.devices.clone();
            let run = self.run.clone();
            let events = self.events_tx.clone();
            let t = std::thread::Builder::new()
                .name(format!("vcpu{i}"))
                .spawn(move || vcpu_loop(i, fd, devices, run, events))
                .map_err(|e| VmmError::State(format!("vCPU thread: {e}")))?;
            threads.push(t);
        }
        for t in &self.devices.virtio {
            let Some(fd) = lock(t).device.event_fd() else {
                continue;
            };
            let t = t.clone();
            let run = self.run.clone();
            let h = std::thread::Builder::new()
                .name("virtio-io".into())
                .spawn(move || poll_loop(fd, t, run))
                .map_err(|e| VmmError::State(format!("device thread: {e}")))?;
            threads.push(h);
        }
        drop(threads);
        if self.is_paused() {
            self.wait_parked()?;
        }
        Ok(())
    }

    fn thread_count(&self) -> usize {
        self.vcpus.len() + self.pollers
    }

    fn kick_all(&self) {
        for t in lock(&self.threads).iter() {
            // SAFETY: the thread handle is alive (joined only in `stop`).
            unsafe { libc::pthread_kill(t.as_pthread_t(), kick_signal()) };
        }
    }

    fn wait_parked(&self) -> Result<()> {
        let want = self.thread_count();
        for _ in 0..2000 {
            {
                let c = self.run.lock();
                // Resumed meanwhile: there is nothing to wait for.
                if c.want != Want::Pause || c.parked >= want {
                    return Ok(());
                }
            }
            self.kick_all();
            let c = self.run.lock();
            let _ = self
                .run
                .cv
                .wait_timeout(c, Duration::from_millis(5))
                .unwrap_or_else(|p| p.into_inner());
        }
        Err(VmmError::State("vCPUs did not stop within 10 s".into()))
    }

    pub fn is_paused(&self) -> bool {
        self.run.lock().want == Want::Pause
    }

    /// Stops guest execution: every vCPU out of KVM_RUN and parked, device threads idle.
    pub fn pause(&self) -> Result<()> {
        {
            let mut c = self.run.lock();
            match c.want {
                Want::Stop => return Err(VmmError::State("the machine is stopping".into())),
                Want::Pause => return Ok(()),
                Want::Run => c.want = Want::Pause,
            }
        }
        self.wait_parked()
    }

    pub fn resume(&self) -> Result<()> {
        let mut c = self.run.lock();
        match c.want {
            Want::Stop => return Err(VmmError::State("the machine is stopping".into())),
            Want::Run => return Ok(()),
            Want::Pause => {}
        }
        // vCPUs are parked (their fds unlocked): tell each guest kvmclock it was paused, so
        // the guest does not report soft lockups.
        for fd in &self.vcpus {
            let _ = lock(fd).kvmclock_ctrl();
        }
        c.want = Want::Run;
        drop(c);
        self.run.cv.notify_all();
        Ok(())
    }

    /// Stops every thread; the machine cannot run again.
    pub fn stop(&self) {
        self.run.lock().want = Want::Stop;
        self.run.cv.notify_all();
        let threads: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
        for t in &threads {
            // SAFETY: the thread has not been joined yet.
            unsafe { libc::pthread_kill(t.as_pthread_t(), kick_signal()) };
        }
        for t in threads {
            let _ = t.join();
        }
    }

    /// Presses the ACPI power button.
    pub fn power_button(&self) -> Result<()> {
        self.devices
            .ged
            .power_button()
            .map_err(|e| VmmError::Device {
                device: "ged".into(),
                detail: e.to_string(),
            })
    }

    pub fn vcpu_fds(&self) -> &[Arc<Mutex<VcpuFd>>] {
        &self.vcpus
    }

    /// Feeds bytes to COM1's receive FIFO (console input).
    pub fn serial_input(&self, bytes: &[u8]) -> Result<usize> {
        lock(&self.devices.serial)
            .enqueue_raw_bytes(bytes)
            .map_err(|e| VmmError::Device {
                device: "serial".into(),
                detail: format!("{e:?}"),
            })
    }
}

/// The command line the guest sees: the user's, plus virtio-mmio declarations for kernels
/// built with `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES` (stock kernels use the ACPI DSDT instead).
pub fn full_cmdline(config: &MachineConfig) -> String {
    let mut s = config.cmdline.trim().to_string();
    let n = config.disks.len() + config.nets.len() + usize::from(config.rng);
    for i in 0..n {
        s.push_str(&format!(
            " virtio_mmio.device=4K@{:#x}:{}",
            layout::mmio_slot(i),
            layout::VIRTIO_GSI_BASE + i as u32
        ));
    }
    s.trim().to_string()
}

fn irqfd(vm: &VmFd, gsi: u32) -> Result<EventFd> {
    let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| VmmError::Device {
        device: format!("irq {gsi}"),
        detail: e.to_string(),
    })?;
    vm.register_irqfd(&evt, gsi)
        .map_err(VmmError::kvm("KVM_IRQFD"))?;
    Ok(evt)
}

fn dev_err(device: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmmError {
    let device = device.into();
    move |e| VmmError::Device {
        device,
        detail: e.to_string(),
    }
}

fn build_devices(
    vm: &VmFd,
    mem: &GuestMem,
    config: &MachineConfig,
    serial: SerialSetup,
    events: &Sender<VmEvent>,
) -> Result<Devices> {
    let out = SerialOut::new(serial.stdout, serial.log).map_err(dev_err("serial log"))?;
    let com1: SerialDevice =
        vm_superio::Serial::new(EventFdTrigger(irqfd(vm, layout::COM1_GSI)?), out);
    let i8042 = vm_superio::I8042Device::new(ResetTrigger(events.clone()));
    let ged = Ged::new(EventFdTrigger(irqfd(vm, layout::GED_GSI)?));
    let mut virtio_devs: Vec<(String, Box<dyn virtio::VirtioDevice>)> = Vec::new();
    for (i, d) in config.disks.iter().enumerate() {
        let name = format!("disk{i} ({})", d.path.display());
        let dev = Block::open(&d.path, d.read_only, d.cache, &format!("ferrite-disk{i}"))
            .map_err(dev_err(name.clone()))?;
        virtio_devs.push((name, Box::new(dev)));
    }
    for (i, n) in config.nets.iter().enumerate() {
        let name = format!("net{i} (tap {}, {})", n.tap, crate::types::Mac::new(n.mac));
        let tap = virtio::net::open_tap(&n.tap).map_err(dev_err(name.clone()))?;
        virtio_devs.push((name, Box::new(Net::new(tap, n.mac))));
    }
    if config.rng {
        virtio_devs.push(("rng".into(), Box::new(Rng::default())));
    }
    let mut transports = Vec::new();
    for (i, (name, dev)) in virtio_devs.into_iter().enumerate() {
        let gsi = layout::VIRTIO_GSI_BASE + i as u32;
        let interrupt = Interrupt {
            status: virtio::mmio::new_status(),
            evt: Arc::new(irqfd(vm, gsi)?),
        };
        let t = MmioTransport::new(dev, mem.clone(), interrupt).map_err(dev_err(name))?;
        transports.push(Arc::new(Mutex::new(t)));
    }
    Ok(Devices {
        serial: Mutex::new(com1),
        i8042: Mutex::new(i8042),
        sleep: SleepControl::new(events.clone()),
        ged,
        virtio: transports,
    })
}

fn vcpu_loop(
    index: usize,
    fd: Arc<Mutex<VcpuFd>>,
    devices: Arc<Devices>,
    run: Arc<RunControl>,
    events: Sender<VmEvent>,
) {
    loop {
        if !run.park_if_needed() {
            return;
        }
        let mut vcpu = lock(&fd);
        let exit = match vcpu.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                vcpu.set_kvm_immediate_exit(0);
                continue;
            }
            Err(e) => {
                let _ = events.send(VmEvent::Crash(format!("vCPU {index}: KVM_RUN: {e}")));
                return;
            }
        };
        match exit {
            VcpuExit::IoIn(port, data) => devices.pio_read(port, data),
            VcpuExit::IoOut(port, data) => devices.pio_write(port, data),
            VcpuExit::MmioRead(addr, data) => devices.mmio_read(addr, data),
            VcpuExit::MmioWrite(addr, data) => devices.mmio_write(addr, data),
            VcpuExit::Hlt => {}
            VcpuExit::Shutdown => {
                // A triple fault: what x86 does as a last-resort reset.
                let _ = events.send(VmEvent::Reset);
                return;
            }
            VcpuExit::SystemEvent(kind, _) => {
                let ev = match kind {
                    kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => VmEvent::PowerOff,
                    kvm_bindings::KVM_SYSTEM_EVENT_RESET => VmEvent::Reset,
                    other => VmEvent::Crash(format!("vCPU {index}: system event {other}")),
                };
                let _ = events.send(ev);
                return;
            }
            VcpuExit::FailEntry(reason, cpu) => {
                let _ = events.send(VmEvent::Crash(format!(
                    "vCPU {index}: entry failed (reason {reason:#x}, cpu {cpu})"
                )));
                return;
            }
            VcpuExit::InternalError => {
                let _ = events.send(VmEvent::Crash(format!("vCPU {index}: KVM internal error")));
                return;
            }
            other => tracing::debug!("vCPU {index}: unhandled exit {other:?}"),
        }
    }
}

/// Waits for a device's host fd (a tap) and the guest's notifications, moving data when
/// both sides are ready; parks with the vCPUs so snapshots see still memory.
fn poll_loop(fd: std::os::fd::RawFd, transport: Arc<Mutex<MmioTransport>>, run: Arc<RunControl>) {
    let notify = lock(&transport).notify.clone();
    let mut wait_for_guest = false;
    loop {
        if !run.park_if_needed() {
            return;
        }
        let mut fds = [
            libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(notify.as_ref()),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let n = if wait_for_guest { 1 } else { 2 };
        // SAFETY: `fds` is a valid array of `n` pollfd entries.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), n, 50) };
        if rc <= 0 {
            continue;
        }
        if fds[0].revents & libc::POLLIN != 0 {
            let _ = notify.read();
            wait_for_guest = false;
        }
        if run.lock().want != Want::Run {
            continue;
        }
        wait_for_guest = lock(&transport).process_event();
    }
}
