resource "ferrite_volume" "root" {
  pool = ferrite_storage_pool.fast.name
  name = "app-root.raw"
  size = 10737418240 # grows in place; never shrinks
}
