resource "ferrite_acl" "ops_vms" {
  path           = "/vms"
  principal_type = "group"
  principal      = ferrite_group.ops.groupid
  role           = ferrite_role.auditor.roleid
}
