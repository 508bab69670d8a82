resource "ferrite_bond" "uplink" {
  name    = "bond0"
  mode    = "802.3ad"
  members = ["eno1", "eno2"]
}
