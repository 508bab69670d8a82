resource "ferrite_storage_pool" "fast" {
  name    = "fast"
  type    = "dir"
  path    = "/srv/fast"
  content = ["images", "rootdir"]
}
