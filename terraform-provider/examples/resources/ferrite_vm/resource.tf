resource "ferrite_vm" "app" {
  name    = "app"
  vcpus   = 2
  memory  = 1024
  kernel  = "local:vmlinux"
  initrd  = "local:initrd.img"
  cmdline = "console=ttyS0 root=/dev/vda"
  disks = {
    disk0 = { volume = ferrite_volume.root.volid }
  }
  net = {
    net0 = { bridge = "vmbr1" }
  }
}
