output "server_names" {
  description = "Names of the servers, in order (the first one serves llm.<domain> and monitoring.<domain>)."
  value       = hcloud_server.this[*].name
}

output "ipv4_addresses" {
  description = "Public IPv4 address of each server (its primary IP, kept across rebuilds)."
  value       = hcloud_primary_ip.ipv4[*].ip_address
}

output "ipv6_addresses" {
  description = "Public IPv6 address (::1 of the primary /64) of each server."
  value       = [for ip in hcloud_primary_ip.ipv6 : cidrhost(ip.ip_network, 1)]
}

output "private_ips" {
  description = "Address of each server in the private network; empty when node_count is 1."
  value       = [for host in local.inventory_vars.hosts : host.private_ip if host.private_ip != ""]
}

output "llm_fqdn" {
  description = "Host name of the LLM API."
  value       = local.llm_fqdn
}

output "monitoring_fqdn" {
  description = "Host name of Grafana."
  value       = local.monitoring_fqdn
}

output "llm_url" {
  description = "Base URL of the OpenAI-compatible API once Ansible has deployed it."
  value       = "https://${local.llm_fqdn}/v1"
}

output "data_volume_ids" {
  description = "Id of each server's persistent data volume (empty when data_volume_size_gb is 0); it survives a server rebuild."
  value       = hcloud_volume.data[*].id
}

output "data_volume_devices" {
  description = "Device path of each data volume on its server, by its stable id (what the playbook mounts)."
  value       = hcloud_volume.data[*].linux_device
}

output "dns_nameservers" {
  description = "Hetzner name servers of the zone: the domain's NS records at the registrar must list these for the names to resolve."
  value       = local.zone_nameservers
}

output "ssh_command" {
  description = "Command to log in to the first server as the deploy user."
  value       = "ssh -o UserKnownHostsFile=${local.known_hosts_path} ${var.deploy_user}@${var.ssh_address_family == "ipv6" ? local.ipv6_address : local.ipv4_address}"
}

output "ansible_inventory" {
  description = "The Ansible inventory (YAML), also written to ansible/inventory/terraform.yml."
  value       = local.ansible_inventory
}

output "ansible_inventory_path" {
  description = "Path of the inventory file written for ansible-playbook -i."
  value       = abspath(local_file.ansible_inventory.filename)
}

output "known_hosts" {
  description = "known_hosts lines of the servers (addresses and host key), also written to ansible/inventory/known_hosts."
  value       = local.known_hosts
}
