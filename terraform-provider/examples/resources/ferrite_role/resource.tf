resource "ferrite_role" "auditor" {
  roleid     = "Auditor2"
  privileges = ["VM.Audit", "Sys.Audit"]
}
