resource "ferrite_container" "web" {
  name     = "web"
  template = "local:debian-12.tar.zst"
  cores    = 2
  memory   = 512
  net = {
    net0 = { bridge = "vmbr1", tag = 10, ip = "10.0.10.20/24", gw = "10.0.10.1" }
  }
  features         = { nesting = true }
  running          = true
  reboot_on_change = true
}
