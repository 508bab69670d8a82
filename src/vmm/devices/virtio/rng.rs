//! virtio-rng (entropy device): fills the guest's buffers from the host's getrandom(2).

use virtio_queue::{desc::split::Descriptor, Queue, QueueT};
use vm_memory::Bytes;

use super::{VirtioDevice, TYPE_RNG, VIRTIO_F_VERSION_1};
use crate::vmm::memory::GuestMem;

pub struct Rng {
    queue_sizes: [u16; 1],
}

impl Default for Rng {
    fn default() -> Self {
        Rng { queue_sizes: [256] }
    }
}

fn fill_random(buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: writes at most the remaining length into our own buffer.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n <= 0 {
            return false;
        }
        done += n as usize;
    }
    true
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        TYPE_RNG
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn read_config(&self, _offset: u64, _data: &mut [u8]) {}

    fn process_queue(&mut self, _queue: usize, queues: &mut [Queue], mem: &GuestMem) -> bool {
        let Some(q) = queues.first_mut() else {
            return false;
        };
        let mut used = false;
        while let Some(chain) = q.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let mut total = 0u32;
            for d in chain.filter(Descriptor::is_write_only) {
                let mut buf = vec![0u8; (d.len() as usize).min(64 * 1024)];
                if !fill_random(&mut buf) || mem.write_slice(&buf, d.addr()).is_err() {
                    break;
                }
                total += buf.len() as u32;
            }
            if let Err(e) = q.add_used(mem, head, total) {
                tracing::warn!("virtio-rng: used ring: {e:?}");
            }
            used = true;
        }
        used
    }
}
