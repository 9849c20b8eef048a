"""Named chart value sets that every chart check (lint, kubeconform, security scan) runs against."""

from __future__ import annotations

from typing import Any

VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "extender-service": {"mode": "extender-service"},
    "second-scheduler-tls-ha": {
        "replicaCount": 3,
        "extender": {
            "tls": {
                "enabled": True,
                "secretName": "carbon-extender-tls",
                "serverName": "127.0.0.1",
                "caFile": "/etc/carbon-extender/tls/ca.crt",
                "clientCASecretName": "scheduler-client-ca",
                "schedulerClientSecretName": "scheduler-client-tls",
                "certFile": "/etc/kube-scheduler/client-tls/tls.crt",
                "keyFile": "/etc/kube-scheduler/client-tls/tls.key",
            },
            "regionMap": {"eu-west-3": "FR"},
        },
        "feed": {"persistence": {"enabled": True, "storageClass": "standard"}, "staticZones": {"FR": 56}},
        "priorityClassName": "system-cluster-critical",
    },
    "extender-service-cert-manager-mtls": {
        "mode": "extender-service",
        "replicaCount": 2,
        "extender": {
            "managedResources": [{"name": "carbon-aware.io/opt-in", "ignoredByScheduler": True}],
            "tls": {
                "enabled": True,
                "clientCASecretName": "scheduler-client-ca",
                "certManager": {
                    "enabled": True,
                    "issuerRef": {"name": "cluster-ca", "kind": "ClusterIssuer"},
                },
            },
        },
        "feed": {"secrets": [{"name": "electricitymaps-token"}], "persistence": {"enabled": True}},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    },
    "no-feed-no-bind": {
        "feed": {"enabled": False},
        "scheduler": {"leaderElection": {"enabled": False}},
        "extender": {
            "bind": False,
            "annotateDecision": False,
            "extraArgs": ["--feed-url=http://carbon-feed.carbon-aware.svc:8080"],
        },
    },
    "deferral-cert-manager": {
        "deferral": {
            "enabled": True,
            "zones": "FR,DE",
            "tls": {
                "certManager": {"enabled": True, "issuerRef": {"name": "cluster-ca", "kind": "ClusterIssuer"}}
            },
        },
        "feed": {"staticZones": {"FR": 56, "DE": 380}},
    },
    "rebalancer": {
        "rebalancer": {
            "enabled": True,
            "replicaCount": 2,
            "marginAbs": 80,
            "extraArgs": ["--cooldown=43200"],
        },
        "feed": {"staticZones": {"FR": 56, "DE": 380}},
    },
}
