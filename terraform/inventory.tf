# The Ansible inventory, rendered from the server addresses and written next to the
# playbook, so `ansible-playbook site.yml` needs no hand editing after `terraform apply`.
locals {
  inventory_vars = {
    deploy_user     = var.deploy_user
    admin_cidrs     = var.admin_cidrs
    ssh_public_keys = var.ssh_public_keys
    ssh_family      = var.ssh_address_family
    identity_file   = var.ssh_identity_file
    known_hosts     = local.known_hosts_path
    domain          = var.domain
    llm_fqdn        = local.llm_fqdn
    monitoring_fqdn = local.monitoring_fqdn
    nameservers     = local.zone_nameservers
    hosts = [
      for index, server in hcloud_server.this : {
        name       = server.name
        ipv4       = hcloud_primary_ip.ipv4[index].ip_address
        ipv6       = cidrhost(hcloud_primary_ip.ipv6[index].ip_network, 1)
        private_ip = local.multi_node ? cidrhost(hcloud_network_subnet.this[0].ip_range, index + 10) : ""
        # The volume's stable device path (/dev/disk/by-id/scsi-0HC_Volume_<id>); "" = none.
        data_volume_device = length(hcloud_volume.data) > 0 ? hcloud_volume.data[index].linux_device : ""
      }
    ]
  }

  ansible_inventory = templatefile("${path.module}/templates/inventory.yaml.tftpl", local.inventory_vars)

  # Each server's addresses with the public half of its host key: what Ansible (and
  # `ssh -o UserKnownHostsFile=...`) accepts, with StrictHostKeyChecking=yes.
  known_hosts_path = abspath("${path.module}/../ansible/inventory/known_hosts")
  known_hosts = join("", [
    for index, server in hcloud_server.this :
    "${hcloud_primary_ip.ipv4[index].ip_address},${cidrhost(hcloud_primary_ip.ipv6[index].ip_network, 1)} ${nonsensitive(var.host_keys[tostring(index + 1)].public)}\n"
  ])
}

resource "local_file" "ansible_inventory" {
  filename        = "${path.module}/../ansible/inventory/terraform.yml"
  content         = local.ansible_inventory
  file_permission = "0644"
}

resource "local_file" "known_hosts" {
  filename        = local.known_hosts_path
  content         = local.known_hosts
  file_permission = "0644"
}
