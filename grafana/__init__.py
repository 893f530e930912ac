"""Grafana datasource and dashboards provisioned as code. (Not built yet.)"""
