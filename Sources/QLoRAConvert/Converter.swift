import QLoRAQuant
import QLoRAIO
