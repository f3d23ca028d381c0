"""isaaclab_newton (test double): Newton physics for kit-less Isaac Lab 3.0."""
