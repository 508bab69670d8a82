# Upload an installer ISO from this machine; a new file (another checksum) replaces it.
resource "ferrite_file" "debian" {
  pool    = "local"
  name    = "debian-12-netinst.iso"
  content = "iso"
  source  = "${path.module}/debian-12-netinst.iso"
  sha256  = filesha256("${path.module}/debian-12-netinst.iso")
}

# A container template, checked against the distribution's published checksum.
resource "ferrite_file" "alpine" {
  pool    = "local"
  name    = "alpine-3.20.tar.gz"
  content = "template"
  source  = "/srv/images/alpine-3.20.tar.gz"
  sha256  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
}
