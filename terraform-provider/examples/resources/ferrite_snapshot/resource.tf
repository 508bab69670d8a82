resource "ferrite_snapshot" "before_upgrade" {
  guest_type  = "container"
  guest_id    = ferrite_container.web.id
  name        = "before-upgrade"
  description = "taken by terraform before the upgrade"
}
