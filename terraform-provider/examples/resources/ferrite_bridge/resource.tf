resource "ferrite_bridge" "lan" {
  name       = "vmbr1"
  vlan_aware = true
  vlans      = ["10", "20-29"]
  ports = {
    bond0 = { vlans = ["10", "20"] }
  }
  addresses = ["10.10.0.1/24"]
  comment   = "guest LAN"
}
