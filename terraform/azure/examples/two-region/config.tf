# The regfront config (docs/configuration.md), rendered from variables; each module adds its
# own `storage:` and passes the YAML to the containers. Only locals here: tests/deploy evaluates
# this file with `terraform console` and checks the result with regfront's own config parser.

locals {
  config = {
    upstreams = {
      for registry, upstream in var.upstreams : registry => {
        urls    = upstream.urls
        on_miss = "fallthrough"
        credentials = upstream.username_env == null ? null : {
          username_env = upstream.username_env
          password_env = upstream.password_env
        }
      }
    }
    mirror = [
      for rule in var.mirror_rules : merge(
        {
          name         = rule.name
          registry     = rule.registry
          repositories = rule.repositories
          tags = {
            include = rule.include
            exclude = rule.exclude
            semver  = rule.semver
            latest  = rule.latest
            names   = rule.names
          }
          digests   = rule.digests
          platforms = rule.platforms
          referrers = rule.referrers
          schedule  = rule.schedule
          tag_ttl   = rule.tag_ttl
        },
        # Only when set: unset, regfront keeps what was pulled in the last week.
        { for key, value in { retention = rule.retention } : key => value if value != null },
      )
    ]
  }
}
