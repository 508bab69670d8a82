resource "ferrite_user" "alice" {
  userid   = "alice@local"
  password = var.alice_password
  groups   = [ferrite_group.ops.groupid]
}
