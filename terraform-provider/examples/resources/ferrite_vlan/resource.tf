resource "ferrite_vlan" "mgmt" {
  parent    = ferrite_bridge.lan.name
  vlan_id   = 10
  addresses = ["10.0.10.2/24"]
}
