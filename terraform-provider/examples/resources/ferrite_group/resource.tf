resource "ferrite_group" "ops" {
  groupid = "ops"
  comment = "operators"
}
