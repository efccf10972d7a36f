"""Behavioural transformer simulator on characterized devices (tables -> devices -> nn modules).

It reads tables only and never imports `cimlut.characterize`.
"""
