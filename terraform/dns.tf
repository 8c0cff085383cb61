# DNS lives in the Hetzner Cloud API (hcloud_zone / hcloud_zone_rrset). The names point
# at the primary IPs of the first server, which survive a server rebuild.
locals {
  dns_names       = toset(["llm", "monitoring"])
  llm_fqdn        = "llm.${var.domain}"
  monitoring_fqdn = "monitoring.${var.domain}"

  zone_name        = var.create_dns_zone ? hcloud_zone.this[0].name : data.hcloud_zone.this[0].name
  zone_nameservers = var.create_dns_zone ? hcloud_zone.this[0].authoritative_nameservers.assigned : data.hcloud_zone.this[0].authoritative_nameservers.assigned

  # Hetzner assigns a /64 to each IPv6 primary IP; the server answers on ::1 of it.
  ipv4_address = hcloud_primary_ip.ipv4[0].ip_address
  ipv6_address = cidrhost(hcloud_primary_ip.ipv6[0].ip_network, 1)
}

resource "hcloud_zone" "this" {
  count = var.create_dns_zone ? 1 : 0

  name              = var.domain
  mode              = "primary"
  ttl               = var.dns_ttl
  delete_protection = var.delete_protection
  labels            = local.labels
}

data "hcloud_zone" "this" {
  count = var.create_dns_zone ? 0 : 1

  name = var.domain
}

resource "hcloud_zone_rrset" "a" {
  for_each = local.dns_names

  zone    = local.zone_name
  name    = each.key
  type    = "A"
  ttl     = var.dns_ttl
  labels  = local.labels
  records = [{ value = local.ipv4_address }]
}

resource "hcloud_zone_rrset" "aaaa" {
  for_each = local.dns_names

  zone    = local.zone_name
  name    = each.key
  type    = "AAAA"
  ttl     = var.dns_ttl
  labels  = local.labels
  records = [{ value = local.ipv6_address }]
}

# Only Let's Encrypt may issue certificates for these names, and nobody may issue
# wildcards. Set on the names themselves so an existing zone's apex is left alone.
resource "hcloud_zone_rrset" "caa" {
  for_each = local.dns_names

  zone   = local.zone_name
  name   = each.key
  type   = "CAA"
  ttl    = var.dns_ttl
  labels = local.labels
  records = [
    { value = "0 issue \"letsencrypt.org\"" },
    { value = "0 issuewild \";\"" },
  ]
}
