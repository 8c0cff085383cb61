terraform {
  # 1.9 is the first release whose variable validations may refer to other variables:
  # admin_cidrs needs that to refuse 0.0.0.0/0 unless allow_ssh_from_anywhere is set.
  required_version = ">= 1.9"

  required_providers {
    hcloud = {
      source = "hetznercloud/hcloud"
      # 1.58 added `location` to Primary IPs (datacenters are gone from the API since
      # July 2026), 1.63 added `subnet_id` to server networks; hcloud_zone and
      # hcloud_zone_rrset (DNS in the Cloud API) exist since 1.56.
      version = "~> 1.66"
    }
    local = {
      source  = "hashicorp/local"
      version = "~> 2.5"
    }
  }
}

# The token comes from var.hcloud_token, or from the HCLOUD_TOKEN environment variable
# when the variable is left unset (null).
provider "hcloud" {
  token = var.hcloud_token
}
