# The README's quick start: a bridge and a container on it.
#   export FERRITE_ENDPOINT=https://127.0.0.1:8006 FERRITE_USERNAME=root@local FERRITE_PASSWORD=...
#   export FERRITE_TLS_FINGERPRINT=$(python3 -c 'import json;print(json.load(open("data/api.json"))["fingerprint"])')
#   terraform apply
terraform {
  required_providers {
    ferrite = { source = "ferrite/ferrite" }
  }
}

provider "ferrite" {}

resource "ferrite_bridge" "lan" {
  name      = "vmbr1"
  addresses = ["10.10.0.1/24"]
}

resource "ferrite_container" "web" {
  name     = "web"
  template = "local:busybox.tar.gz"
  memory   = 128
  net = {
    net0 = { bridge = ferrite_bridge.lan.name, ip = "10.10.0.10/24", gw = "10.10.0.1" }
  }
}
