# shellcheck shell=bash
# Operators run in the cluster: the Kubeflow training-operator and Kaniko.
install_training_operator() { log "training-operator: not implemented yet"; }
install_kaniko() { log "kaniko: not implemented yet"; }
