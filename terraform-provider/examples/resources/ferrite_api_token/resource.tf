resource "ferrite_api_token" "ci" {
  name = "ci"
  user = ferrite_user.alice.userid
}

output "ci_token" {
  value     = ferrite_api_token.ci.token
  sensitive = true
}
